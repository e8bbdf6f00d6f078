"""``vlmrm render``: random-policy frames exactly as the reward model sees them, in a grid."""

from __future__ import annotations

import os

import torch

from vlmrm.config import Config
from vlmrm.envs.factory import SeedPurpose, env_for
from vlmrm.errors import VLMRMError
from vlmrm.keys import NEXT, PIXELS, REWARD
from vlmrm.media import grid_image, write_png
from vlmrm.reward.model import input_size
from vlmrm.run.build import make_reward_model


def sample_frames(cfg: Config, size: tuple[int, int] | None, steps: int, stride: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` frames, ``stride`` env steps apart, from a random policy (and GT rewards)."""
    env = env_for(cfg, SeedPurpose.RENDER, render_size=size)
    try:
        td = env.rollout(steps * stride, break_when_any_done=False)
    finally:
        env.close()
    pick = slice(stride - 1, None, stride)
    return td[NEXT, PIXELS][pick][:steps], td[NEXT, REWARD].reshape(-1)[pick][:steps]


def render(cfg: Config, out: str | os.PathLike, steps: int = 12, stride: int = 5
           ) -> list[float]:
    """Write the grid PNG to ``out``; return each frame's reward (VLM, or GT without one)."""
    if steps < 1 or stride < 1:
        raise VLMRMError(f"--steps {steps} and --stride {stride} must both be at least 1.")
    reward_model = make_reward_model(cfg)
    frames, gt = sample_frames(cfg, input_size(reward_model), steps, stride)
    if reward_model is None:
        rewards, seen, label = gt, frames, "GT"
    else:
        rewards, seen, label = reward_model(frames).cpu(), reward_model.model_view(frames), "VLM"
    values = [float(r) for r in rewards]
    captions = [f"t={(i + 1) * stride}  {label} {v:.4f}" for i, v in enumerate(values)]
    write_png(out, grid_image(seen.numpy(), captions))
    return values
