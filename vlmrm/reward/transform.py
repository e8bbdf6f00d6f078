"""TorchRL adapter: replace the env's reward by the VLM reward, keeping it as ``gt_reward``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDictBase
from torchrl.envs import Transform

from vlmrm.keys import GT_REWARD, NEXT, PIXELS, REWARD

#: Anything that maps uint8 frames ``[..., H, W, 3]`` to rewards ``[...]``, e.g. a
#: :class:`~vlmrm.reward.model.VLMRewardModel`.
FrameReward = Callable[[torch.Tensor], torch.Tensor]


class VLMRewardTransform(Transform):
    """Writes ``reward`` from ``pixels`` and moves the env's reward to ``gt_reward``.

    As an env transform it scores one step at a time; as a collector ``postproc`` or
    called on a collected batch (``forward``) it scores the whole batch at once, which is
    what training uses. ``reward_model`` ``None`` keeps the env's reward (the ground-truth
    baseline) while still filling ``gt_reward``.
    """

    def __init__(self, reward_model: FrameReward | None, pixels_key: str = PIXELS,
                 drop_pixels: bool = False) -> None:
        super().__init__(in_keys=[pixels_key, REWARD], out_keys=[REWARD, GT_REWARD])
        self.reward_model = reward_model
        self.pixels_key = pixels_key
        self.drop_pixels = drop_pixels

    def _call(self, next_td: TensorDictBase) -> TensorDictBase:
        reward = None
        if self.reward_model is not None:
            reward = self.reward_model(next_td.get(self.pixels_key))
        return self._write(next_td, reward)

    def _write(self, next_td: TensorDictBase, reward: torch.Tensor | None) -> TensorDictBase:
        gt = next_td.get(REWARD)
        next_td.set(GT_REWARD, gt)
        if reward is not None:
            next_td.set(REWARD, reward.reshape(gt.shape).to(gt.dtype))
        return self._drop_pixels(next_td)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        self._call(tensordict.get(NEXT))
        return self._drop_pixels(tensordict)

    def with_rewards(self, tensordict: TensorDictBase, reward: torch.Tensor) -> TensorDictBase:
        """As :meth:`forward`, with the VLM rewards already computed (streamed scoring):
        ``reward`` shaped like the batch."""
        self._write(tensordict.get(NEXT), reward)
        return self._drop_pixels(tensordict)

    def _drop_pixels(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self.drop_pixels and self.pixels_key in tensordict.keys():
            del tensordict[self.pixels_key]
        return tensordict

    def transform_reward_spec(self, reward_spec):
        reward_spec[GT_REWARD] = reward_spec[REWARD].clone()
        return reward_spec
