"""Episode videos: frames with their rewards written beneath, as mp4 files and TensorBoard
videos (animated GIFs in an image summary, which is what TensorBoard plays)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vlmrm.rl.evaluate import Episode

FPS = 20
BLOCK = 16  # H.264 wants sizes divisible by 16; we pad instead of letting ffmpeg rescale


def caption_font(size: int) -> ImageFont.ImageFont:
    """PIL's bundled scalable font (no system fonts needed)."""
    return ImageFont.load_default(size=size)


def caption_frames(frames: np.ndarray, lines: Sequence[Sequence[str]]) -> np.ndarray:
    """``frames`` uint8 ``[T, H, W, 3]`` with ``lines[t]`` written in a strip beneath frame t;
    the result is padded to multiples of 16 pixels."""
    t, h, w, _ = frames.shape
    font_size = max(10, min(16, w // 22))
    strip = (font_size + 4) * max(len(x) for x in lines) + 6
    out_h, out_w = _ceil(h + strip), _ceil(w)
    out = np.full((t, out_h, out_w, 3), 255, dtype=np.uint8)
    out[:, :h, :w] = frames
    font = caption_font(font_size)
    for i, text in enumerate(lines):
        img = Image.fromarray(out[i])
        draw = ImageDraw.Draw(img)
        for j, line in enumerate(text):
            draw.text((4, h + 3 + j * (font_size + 4)), line, fill=(0, 0, 0), font=font)
        out[i] = np.asarray(img)
    return out


def _ceil(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


def episode_lines(episode: Episode, has_vlm: bool, prefix: str = "") -> list[list[str]]:
    """Per-frame captions: step, VLM reward, ground-truth reward, success."""
    lines = []
    for t in range(episode.length):
        first = f"{prefix}t={t + 1}"
        if has_vlm:
            first += f"  VLM {episode.vlm_rewards[t].item():.4f}"
        second = f"GT {episode.gt_rewards[t].item():.3f}"
        if episode.success is not None:
            second += "  success" if bool(episode.success[t]) else "  -"
        lines.append([first, second])
    return lines


def episode_video(episodes: Sequence[Episode], has_vlm: bool) -> np.ndarray:
    """All episodes' frames, captioned, one after another: uint8 ``[T, H, W, 3]``."""
    parts = []
    for k, ep in enumerate(episodes):
        if ep.frames is None:
            raise ValueError("episode has no frames: run it with keep_frames=True")
        frames = _as_uint8(ep.frames)
        prefix = f"ep {k + 1}  " if len(episodes) > 1 else ""
        parts.append(caption_frames(frames, episode_lines(ep, has_vlm, prefix)))
    return np.concatenate(parts)


def _as_uint8(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    return np.ascontiguousarray(frames.reshape(-1, *frames.shape[-3:]).astype(np.uint8))


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = FPS) -> Path:
    """Write ``frames`` as an H.264 mp4; written to a temporary name first, so a failure
    leaves no half-written file."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    try:
        imageio.mimwrite(tmp, list(frames), fps=fps, macro_block_size=BLOCK)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def gif_bytes(frames: np.ndarray, fps: int = FPS) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def add_tensorboard_video(writer, tag: str, frames: np.ndarray, step: int,
                          fps: int = FPS) -> None:
    """Log ``frames`` as a TensorBoard video.

    ``SummaryWriter.add_video`` needs moviepy < 2 (it imports ``moviepy.editor``, removed in
    moviepy 2); it only wraps a GIF in an image summary, which we build directly instead.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    _, h, w, c = frames.shape
    image = Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=gif_bytes(
        frames, fps))
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    writer._get_file_writer().add_summary(summary, step)  # what add_video does internally
    writer.flush()
