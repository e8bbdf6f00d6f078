"""One registry of reward backends: built-ins plus entry-point plugins (group ``vlmrm.backends``).

It maps names to classes and nothing more: backends are registered by import path and
imported only when used, so a heavy library is loaded only for the backend that needs it.
Building a backend from the config is the wiring's job (:mod:`vlmrm.run.build`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from vlmrm.errors import ConfigError

if TYPE_CHECKING:
    from vlmrm.backends.base import RewardBackend

ENTRY_POINT_GROUP = "vlmrm.backends"

BUILTIN_BACKENDS = {
    "open_clip": "vlmrm.backends.openclip_backend:OpenCLIPBackend",
    "hf_clip": "vlmrm.backends.hf_clip_backend:HFCLIPBackend",
    "siglip": "vlmrm.backends.siglip_backend:SiglipBackend",
    "xclip": "vlmrm.backends.xclip_backend:XCLIPBackend",
    "hf_judge": "vlmrm.backends.hf_judge_backend:HFJudgeBackend",
}

#: Built-in backends not of the embedding kind, by name -> kind (``vlmrm.backends.base.KINDS``):
#: config checks read it without importing the backend (see :func:`static_kind`).
BUILTIN_KINDS = {"xclip": "video", "hf_judge": "judge"}

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


def backend_entry(name: str) -> BackendEntry:
    """The entry for backend ``name``; raises listing the known names if there is none."""
    backends = available_backends()
    if name not in backends:
        known = ", ".join([*backends, GROUND_TRUTH])
        raise ConfigError(
            f"reward.backend={name!r} is not a known backend. Known backends: {known}. "
            "Run `vlmrm backends` for details, or install the package that provides it."
        )
    return backends[name]


def static_kind(name: str) -> str | None:
    """The kind of a built-in backend without importing it; None for ``ground_truth`` and
    for plugins (their class says, once built)."""
    if name not in BUILTIN_BACKENDS:
        return None
    return BUILTIN_KINDS.get(name, "embedding")


def backend_class(name: str) -> type[RewardBackend]:
    """The class registered as ``name`` (imported now: only the backend in use is loaded)."""
    if name == GROUND_TRUTH:
        raise ConfigError("reward.backend=ground_truth is the env's own reward: it has no "
                          "VLM backend to build.")
    return backend_entry(name).load()
