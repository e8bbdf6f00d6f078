"""One registry of reward backends: built-ins plus entry-point plugins (group ``vlmrm.backends``).

Backends are registered by import path and imported only when used, so a heavy library
is loaded only for the backend that needs it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from vlmrm.errors import ConfigError

if TYPE_CHECKING:
    from vlmrm.backend import RewardBackend
    from vlmrm.config import RewardConfig

ENTRY_POINT_GROUP = "vlmrm.backends"

BUILTIN_BACKENDS = {
    "open_clip": "vlmrm.backends.openclip_backend:OpenCLIPBackend",
    "hf_clip": "vlmrm.backends.hf_clip_backend:HFCLIPBackend",
    "siglip": "vlmrm.backends.siglip_backend:SiglipBackend",
}

#: Not a VLM: the env's own reward (the paper's upper-bound baseline).
GROUND_TRUTH = "ground_truth"


@dataclass(frozen=True)
class BackendEntry:
    name: str
    target: str  # "module:attribute"
    source: str  # "built-in" or the distribution that declared the entry point

    def load(self) -> type[RewardBackend]:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


def available_backends() -> dict[str, BackendEntry]:
    """All backends by name. A plugin reusing a taken name is an error, not a silent override."""
    found = {n: BackendEntry(n, t, "built-in") for n, t in BUILTIN_BACKENDS.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        if ep.name in found or ep.name == GROUND_TRUTH:
            taken_by = found[ep.name].source if ep.name in found else "vlmrm (reserved)"
            raise ConfigError(
                f"Backend name {ep.name!r} from package {dist!r} is already taken by "
                f"{taken_by}. Rename the entry point in that package's `{ENTRY_POINT_GROUP}` "
                "group."
            )
        found[ep.name] = BackendEntry(ep.name, ep.value, dist)
    return found


def check_backend_name(name: str) -> BackendEntry | None:
    """Return the entry for ``name`` (None for ground_truth) or raise listing known names."""
    if name == GROUND_TRUTH:
        return None
    backends = available_backends()
    if name not in backends:
        known = ", ".join([*backends, GROUND_TRUTH])
        raise ConfigError(
            f"reward.backend={name!r} is not a known backend. Known backends: {known}. "
            "Run `vlmrm backends` for details, or install the package that provides it."
        )
    return backends[name]


def make_backend(cfg: RewardConfig, device: str) -> RewardBackend:
    """Build the configured backend on ``device``."""
    entry = check_backend_name(cfg.backend)
    if entry is None:
        raise ConfigError("reward.backend=ground_truth has no VLM backend to build.")
    cls = entry.load()
    return cls(
        cfg.model,
        pretrained=cfg.pretrained,
        device=device,
        precision=cfg.precision,
        batch_size=cfg.batch_size,
        cache_dir=cfg.cache_dir,
        model_config=cfg.model_config,
    )
