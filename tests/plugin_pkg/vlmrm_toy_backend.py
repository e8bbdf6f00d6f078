"""TEST-ONLY vlmrm reward backend: a worked example of a third-party backend package.

It is NOT a vision-language model: a tiny conv image encoder and a hashing bag-of-words
text encoder with no training behind them, so its "rewards" mean nothing. It exists to
show, and to test, everything a backend package provides:

- a :class:`vlmrm.backends.base.RewardBackend` subclass with ``name``, ``model_naming``,
  ``self.preprocessor``, ``_encode_pixels``, ``_encode_prompts``, ``embed_dim``,
  ``context_length`` and ``_count_tokens``;
- its own model format (a directory with ``toy_config.json`` + ``toy_model.safetensors``,
  written by :func:`save_toy`) loaded without pickle;
- the shared offline message (:func:`vlmrm.backends.hub.unavailable`) for a model it cannot find;
- a per-image PIL reference processor (:func:`reference_preprocess`), playing the part of
  "the library's own processor" that the batched preprocessing is checked against;
- the entry point in ``pyproject.toml``: ``[project.entry-points."vlmrm.backends"]``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vlmrm.backends.base import RewardBackend
from vlmrm.backends.hub import unavailable
from vlmrm.backends.preprocess import ImagePreprocessor
from vlmrm.errors import ModelUnavailableError

CONFIG_FILE, WEIGHTS_FILE = "toy_config.json", "toy_model.safetensors"


@dataclass(frozen=True)
class ToyConfig:
    image_size: int = 32
    width: int = 8
    embed_dim: int = 16
    buckets: int = 512
    max_words: int = 32  # the text "context": a bag of words has no limit, but a contract does
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)


class ToyNet(nn.Module):
    """Image tower: two strided convs + pooling; text tower: hashed words -> mean embedding."""

    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        w, d = cfg.width, cfg.embed_dim
        self.cfg = cfg
        self.image = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, d),
        )
        self.words = nn.EmbeddingBag(cfg.buckets, d, mode="mean")
        self.text = nn.Linear(d, d)

    def token_ids(self, prompt: str) -> list[int]:
        # md5, not hash(): Python's str hash changes between processes.
        words = prompt.lower().split() or [""]
        return [int(hashlib.md5(w.encode()).hexdigest(), 16) % self.cfg.buckets for w in words]

    def encode_text(self, prompts: list[str], device: torch.device) -> torch.Tensor:
        ids = [self.token_ids(p) for p in prompts]
        flat = torch.tensor([i for seq in ids for i in seq], device=device)
        offsets = torch.tensor([0, *np.cumsum([len(s) for s in ids])[:-1]], device=device)
        return self.text(self.words(flat, offsets))


def save_toy(model: ToyNet, directory: str | os.PathLike) -> Path:
    """Write ``model`` as a toy model directory (config JSON + safetensors weights)."""
    from safetensors.torch import save_file

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text(json.dumps(asdict(model.cfg)))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path / WEIGHTS_FILE)
    return path


def load_toy(directory: str | os.PathLike) -> ToyNet:
    """Read a directory written by :func:`save_toy` (safetensors: no pickle, no code)."""
    from safetensors.torch import load_file

    path = Path(directory)
    raw = json.loads((path / CONFIG_FILE).read_text())
    cfg = ToyConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    model = ToyNet(cfg)
    model.load_state_dict(load_file(path / WEIGHTS_FILE))
    return model


def reference_preprocess(images, cfg: ToyConfig) -> torch.Tensor:
    """Per-image PIL path: squash-resize (bicubic), scale to [0, 1], normalise."""
    from PIL import Image

    out = []
    for img in images:
        img = img.resize((cfg.image_size, cfg.image_size), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out.append((x - torch.tensor(cfg.mean)[:, None, None]) / torch.tensor(cfg.std)[:, None, None])
    return torch.stack(out)


class ToyBackend(RewardBackend):
    """TEST-ONLY backend (see the module docstring); registered as ``toy``."""

    name = "toy"
    model_naming = ("TEST ONLY: a directory written by vlmrm_toy_backend.save_toy (absolute, or "
                    "relative to reward.cache_dir); any name with reward.pretrained=false")

    def __init__(self, model: str, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if self.pretrained:
            net = load_toy(self._find(model))
        else:
            torch.manual_seed(0)  # random weights, but the same ones every run
            net = ToyNet(ToyConfig())
        self.model = net.eval().requires_grad_(False).to(self.device, self.dtype)
        cfg = net.cfg
        self.preprocessor = ImagePreprocessor(
            size=(cfg.image_size, cfg.image_size), mean=cfg.mean, std=cfg.std,
            interpolation="bicubic", resize_mode="squash")

    def _find(self, model: str) -> Path:
        candidates = [Path(model).expanduser()]
        if self.cache_dir:
            candidates.append(Path(self.cache_dir) / model)
        for path in candidates:
            if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
                return path
        if any(p.exists() for p in candidates):
            raise ModelUnavailableError(
                f"toy: {model!r} exists but holds no {CONFIG_FILE} + {WEIGHTS_FILE}.")
        # A toy model has no hub; the message is still the shared one, so users see one form.
        raise unavailable(model, self.name, self.cache_dir,
                          "python -c \"import vlmrm_toy_backend as t; "
                          "t.save_toy(t.ToyNet(t.ToyConfig()), 'DIR')\"")

    @property
    def embed_dim(self) -> int:
        return self.model.cfg.embed_dim

    @property
    def context_length(self) -> int:
        return self.model.cfg.max_words

    def _count_tokens(self, prompt: str) -> int:
        return len(self.model.token_ids(prompt))

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.image(pixels)

    def _encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        return self.model.encode_text(prompts, self.device)
