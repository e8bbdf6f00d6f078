"""The TorchRL adapter: per-step (env transform) and per-batch scoring agree; gt_reward kept."""

import torch
from torchrl.envs import TransformedEnv

from vlmrm.backends.openclip_backend import OpenCLIPBackend
from vlmrm.config import EnvConfig
from vlmrm.envs.factory import make_base_env
from vlmrm.keys import GT_REWARD
from vlmrm.reward.model import VLMRewardModel
from vlmrm.reward.transform import VLMRewardTransform


def reward_model(tiny):
    return VLMRewardModel(OpenCLIPBackend(tiny.reference), ["pole upright"], ["pole and cart"], 0.0)


def test_env_transform_and_batch_transform_give_the_same_rewards(tiny_openclip):
    model = reward_model(tiny_openclip)
    env = TransformedEnv(make_base_env(EnvConfig(id="CartPole-v1"), None, True, seed=3),
                         VLMRewardTransform(model))
    stepped = env.rollout(12)
    assert torch.all(stepped["next", GT_REWARD] == 1.0)  # CartPole's own reward, kept
    assert GT_REWARD in env.full_reward_spec.keys()

    # The same trajectory as collected without the transform, scored in one batch afterwards.
    raw = stepped.clone()
    raw["next", "reward"] = raw["next", GT_REWARD]
    del raw["next", GT_REWARD]
    batch = VLMRewardTransform(model, drop_pixels=True)(raw)
    assert "pixels" not in batch.keys() and "pixels" not in batch["next"].keys()
    torch.testing.assert_close(batch["next", "reward"], stepped["next", "reward"],
                               atol=1e-5, rtol=0)
    expected = model(stepped["next", "pixels"]).unsqueeze(-1)
    torch.testing.assert_close(stepped["next", "reward"], expected, atol=1e-5, rtol=0)
