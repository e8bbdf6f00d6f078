"""``vlmrm render``: random-policy frames exactly as the reward model sees them, in a grid."""

from __future__ import annotations

import os

import torch
from tensordict import TensorDictBase

from vlmrm.config import Config
from vlmrm.envs.factory import SeedPurpose, env_for
from vlmrm.errors import VLMRMError
from vlmrm.keys import NEXT, PIXELS, REWARD
from vlmrm.media import grid_image, write_png
from vlmrm.reward.seam import RewardModel, Scorer
from vlmrm.run.build import make_reward_model


def random_rollout(cfg: Config, size: tuple[int, int] | None, steps: int) -> TensorDictBase:
    """``steps`` env steps of a random policy, frames rendered, across episode ends."""
    env = env_for(cfg, SeedPurpose.RENDER, render_size=size)
    try:
        return env.rollout(steps, break_when_any_done=False)
    finally:
        env.close()


def sample_frames(cfg: Config, size: tuple[int, int] | None, steps: int, stride: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` frames, ``stride`` env steps apart, from a random policy (and GT rewards)."""
    td = random_rollout(cfg, size, steps * stride)
    pick = slice(stride - 1, None, stride)
    return td[NEXT, PIXELS][pick][:steps], td[NEXT, REWARD].reshape(-1)[pick][:steps]


def sampled_rewards(cfg: Config, model: RewardModel, steps: int, stride: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`sample_frames`, with each frame's reward: a model of more than one frame
    scores the whole rollout through the seam (windows across episode ends as in
    training), then the frames are picked."""
    if model.frames_needed == 1:
        frames, _ = sample_frames(cfg, model.image_size, steps, stride)
        return frames, model(frames).cpu()
    td = random_rollout(cfg, model.image_size, steps * stride)
    if model.resize_frames is not None:
        td.set((NEXT, PIXELS), model.resize_frames(td.get((NEXT, PIXELS))))
    frames = td.get((NEXT, PIXELS))
    with model.frozen():
        rewards = Scorer(model).score(td).get((NEXT, REWARD)).reshape(-1).cpu()
    pick = slice(stride - 1, None, stride)
    return frames[pick][:steps], rewards[pick][:steps]


def render(cfg: Config, out: str | os.PathLike, steps: int = 12, stride: int = 5
           ) -> list[float]:
    """Write the grid PNG to ``out``; return each frame's reward (VLM, or GT without one)."""
    if steps < 1 or stride < 1:
        raise VLMRMError(f"--steps {steps} and --stride {stride} must both be at least 1.")
    reward_model = make_reward_model(cfg)
    if reward_model is None:
        frames, rewards = sample_frames(cfg, None, steps, stride)
        seen, label = frames, "GT"
    else:
        frames, rewards = sampled_rewards(cfg, reward_model, steps, stride)
        seen, label = reward_model.model_view(frames), "VLM"
    values = [float(r) for r in rewards]
    captions = [f"t={(i + 1) * stride}  {label} {v:.4f}" for i, v in enumerate(values)]
    write_png(out, grid_image(seen.numpy(), captions))
    return values
