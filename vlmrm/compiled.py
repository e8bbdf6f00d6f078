"""``torch.compile`` that falls back to eager, once and with one warning, where it cannot work.

``agent.compile`` (the SAC loss) and ``reward.compile`` (the image encoder) are speed options:
a machine without a C++ compiler, or a platform Inductor does not support, must still train,
with the same results, only slower.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from typing import Any

import torch

#: C++ compilers Inductor looks for (``torch._inductor.config.cpp.cxx``); it needs one for
#: CPU code, and for the host side of GPU code.
CXX = ("g++", "clang++", "c++")


class CompiledOrEager:
    """``fn`` compiled; eager instead if compiling fails on the first call (no C++ compiler,
    no Inductor for this platform, ...). Later failures are errors: compiling had worked."""

    def __init__(self, fn: Callable, what: str, **compile_kwargs: Any) -> None:
        self.eager, self.what, self.proven = fn, what, False
        self.compiled: Callable | None = None
        if not any(shutil.which(c) for c in CXX):
            self._fall_back("no C++ compiler (g++, clang++) on PATH; Inductor needs one")
            return
        self.compiled = torch.compile(fn, **compile_kwargs)

    def _fall_back(self, why: str) -> None:
        warnings.warn(f"{self.what}: torch.compile is unavailable ({why}); running eager, "
                      "with the same results, only slower.", RuntimeWarning, stacklevel=3)
        self.compiled = None

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is None:
            return self.eager(*args, **kwargs)
        if self.proven:
            return self.compiled(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any first-call failure means: run eager
            self._fall_back(f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300]}")
            return self.eager(*args, **kwargs)
        self.proven = True
        return out
