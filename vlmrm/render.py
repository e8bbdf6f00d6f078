"""``vlmrm render``: random-policy frames exactly as the reward model sees them, in a grid."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vlmrm.config import Config
from vlmrm.errors import VLMRMError
from vlmrm.video import caption_font


def model_view(reward_model, frames: torch.Tensor) -> np.ndarray:
    """uint8 ``[B, h, w, 3]``: the resized and cropped picture the image encoder receives
    (before normalisation)."""
    return reward_model.backend.preprocessor.resize_frames(frames).numpy()


def sample_frames(cfg: Config, size, steps: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` frames, ``stride`` env steps apart, from a random policy (and GT rewards)."""
    from vlmrm.rl.envs import make_base_env

    env = make_base_env(cfg.env, size, from_pixels=True, seed=cfg.seed)
    try:
        td = env.rollout(steps * stride, break_when_any_done=False)
    finally:
        env.close()
    pick = slice(stride - 1, None, stride)
    return td["next", "pixels"][pick][:steps], td["next", "reward"].reshape(-1)[pick][:steps]


def grid_image(frames: np.ndarray, captions: list[str], columns: int | None = None) -> Image.Image:
    """Frames ``[B, h, w, 3]`` in a grid, each with its caption underneath."""
    b, h, w, _ = frames.shape
    cols = columns or math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    font_size = max(10, min(16, w // 16))
    cell_h = h + font_size + 8
    grid = Image.new("RGB", (cols * (w + 4) + 4, rows * cell_h + 4), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, (frame, text) in enumerate(zip(frames, captions, strict=True)):
        x, y = 4 + (i % cols) * (w + 4), 4 + (i // cols) * cell_h
        grid.paste(Image.fromarray(frame), (x, y))
        draw.text((x + 2, y + h + 2), text, fill=(0, 0, 0), font=caption_font(font_size))
    return grid


def render(cfg: Config, out: str | os.PathLike, steps: int = 12, stride: int = 5
           ) -> list[float]:
    """Write the grid PNG to ``out``; return each frame's reward (VLM, or GT without one)."""
    from vlmrm.train import make_reward_model, reward_device

    if steps < 1 or stride < 1:
        raise VLMRMError(f"--steps {steps} and --stride {stride} must both be at least 1.")
    reward_model = make_reward_model(cfg, reward_device(cfg))
    size = None if reward_model is None else reward_model.image_size
    frames, gt = sample_frames(cfg, size, steps, stride)
    if reward_model is None:
        rewards, seen, label = gt, frames.numpy(), "GT"
    else:
        rewards, seen, label = reward_model(frames).cpu(), model_view(reward_model, frames), "VLM"
    values = [float(r) for r in rewards]
    captions = [f"t={(i + 1) * stride}  {label} {v:.4f}" for i, v in enumerate(values)]
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    grid_image(seen, captions).save(tmp, format="PNG")
    os.replace(tmp, path)
    return values
