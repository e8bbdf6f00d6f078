"""Model-hub helpers shared by backends: fail fast and clearly when a model is unreachable."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from vlmrm.errors import ModelUnavailableError

HUB_HOST = "huggingface.co"


def offline_requested() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hugging Face hub answers a TCP connect within ``timeout`` seconds."""
    if offline_requested():
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Make huggingface_hub serve from its cache only, instead of retrying for minutes."""
    from huggingface_hub import constants

    before_env = os.environ.get("HF_HUB_OFFLINE")
    before = constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
        if before_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before_env


def hf_cache_dir(cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def unavailable(model: str, backend: str, cache_dir: str | None, how: str) -> ModelUnavailableError:
    """The one message every backend gives for a model that is neither cached nor reachable."""
    return ModelUnavailableError(
        f"Reward model {model!r} (backend {backend!r}) is not in the local cache "
        f"({hf_cache_dir(cache_dir)}) and the model hub cannot be reached"
        f"{' (HF_HUB_OFFLINE is set)' if offline_requested() else ''}. "
        f"On a machine with network access, download it with: {how} ; then copy the cache "
        "directory here and point reward.cache_dir (or HF_HOME) at it. For a test run without "
        "weights, set reward.pretrained=false."
    )
