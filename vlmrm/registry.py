"""Deprecated alias of :mod:`vlmrm.backends.registry`, where the backend contract moved.

It keeps plugins written against ``vlmrm.registry`` working for one release, with a warning.
"""

from __future__ import annotations

import importlib
import warnings

warnings.warn("vlmrm.registry moved to vlmrm.backends.registry; the old path will be removed in the "
              "next release. Import from vlmrm.backends.registry.", DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(importlib.import_module("vlmrm.backends.registry"), name)
