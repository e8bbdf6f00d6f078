"""Batched image preprocessing on tensors: uint8 frames in, normalised model input out.

Each backend builds one :class:`ImagePreprocessor` from its model's own preprocessing
config, so resize mode, interpolation, mean and std travel with the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

RESIZE_MODES = ("shortest", "longest", "squash")
#: ``reward.resize`` names -> resize modes.
CONFIG_RESIZE = {"crop": "shortest", "squash": "squash"}


@dataclass(frozen=True)
class ImagePreprocessor:
    """Resize, crop/pad and normalise a ``[B, H, W, 3]`` uint8 batch to ``[B, 3, h, w]`` float.

    ``resize_mode``: "shortest" resizes the short side then centre-crops (CLIP),
    "squash" resizes both sides to the target (SigLIP), "longest" resizes the long side
    then pads with ``fill``.
    """

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill: int = 0

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode={self.resize_mode!r} not in {RESIZE_MODES}")

    def __call__(self, frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(
                f"expected uint8 frames of shape [B, H, W, 3], got {tuple(frames.shape)} "
                f"{frames.dtype}"
            )
        # Resizing stays in uint8, as PIL does: resizing floats differs by several levels.
        x = frames.permute(0, 3, 1, 2)
        x = self._resize(x)
        x = x.to(torch.float32).div_(255.0)
        x = F.normalize(x, mean=list(self.mean), std=list(self.std))
        return x.to(dtype)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        interp = InterpolationMode(self.interpolation)
        h, w = self.size
        if self.resize_mode == "squash":
            return F.resize(x, [h, w], interpolation=interp, antialias=True)
        if self.resize_mode == "shortest":
            x = F.resize(x, [min(h, w)] if h == w else [h, w], interpolation=interp, antialias=True)
            return F.center_crop(x, [h, w])
        scale = min(h / x.shape[-2], w / x.shape[-1])
        new = [round(x.shape[-2] * scale), round(x.shape[-1] * scale)]
        x = F.resize(x, new, interpolation=interp, antialias=True)
        pad_h, pad_w = h - new[0], w - new[1]
        padding = [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2]
        return F.pad(x, padding, fill=self.fill)

    def resize_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Only the geometric part: uint8 ``[..., H, W, 3]`` -> uint8 ``[..., h, w, 3]``.

        Frames already at ``size`` come back as they are: resizing them again is the
        identity in every mode, so the model reads the same pixels either way.
        """
        if tuple(frames.shape[-3:-1]) == self.size:
            return frames
        lead = frames.shape[:-3]
        x = self._resize(frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2))
        return x.permute(0, 2, 3, 1).reshape(*lead, *self.size, 3).contiguous()

    def with_resize(self, config_name: str) -> ImagePreprocessor:
        """The same preprocessing with ``reward.resize`` (``crop`` or ``squash``) instead of
        the model's own resize mode."""
        return replace(self, resize_mode=CONFIG_RESIZE[config_name])


def as_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))
