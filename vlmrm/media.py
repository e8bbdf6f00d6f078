"""Pictures and videos: frames with captions, PNG grids, mp4 files, TensorBoard videos.

Frames are uint8 ``[T, H, W, 3]`` arrays; nothing here knows about envs or training. Files
are written through :func:`vlmrm.fileio.atomic_path`: a failure leaves no partial file.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlmrm.fileio import atomic_path

FPS = 20
BLOCK = 16  # H.264 wants sizes divisible by 16; we pad instead of letting ffmpeg rescale


def caption_font(size: int) -> ImageFont.ImageFont:
    """PIL's bundled scalable font (no system fonts needed)."""
    return ImageFont.load_default(size=size)


def as_uint8_frames(frames) -> np.ndarray:
    """A torch tensor or array of frames ``[..., H, W, 3]`` as contiguous uint8 ``[T, H, W, 3]``."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    return np.ascontiguousarray(frames.reshape(-1, *frames.shape[-3:]).astype(np.uint8))


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


def grid_image(frames: np.ndarray, captions: Sequence[str], columns: int | None = None
               ) -> Image.Image:
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


def write_png(path: str | os.PathLike, image: Image.Image) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Arrays in one compressed ``.npz`` (plain arrays: it loads with ``allow_pickle=False``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return Path(path)


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = FPS) -> Path:
    """Write ``frames`` as an H.264 mp4."""
    import imageio.v2 as imageio

    with atomic_path(path) as tmp:
        imageio.mimwrite(tmp, list(frames), fps=fps, macro_block_size=BLOCK)
    return Path(path)


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: int = FPS) -> Path:
    """Write ``frames`` as a looping GIF (:func:`gif_bytes`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(gif_bytes(frames, fps))
    return Path(path)


#: Video formats ``vlmrm play --out`` writes, by file extension (lower case).
VIDEO_WRITERS = {".mp4": write_mp4, ".gif": write_gif}


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = FPS) -> Path:
    """``frames`` as an mp4 or a GIF, by ``path``'s extension (see :data:`VIDEO_WRITERS`)."""
    return VIDEO_WRITERS[Path(path).suffix.lower()](path, frames, fps)


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
