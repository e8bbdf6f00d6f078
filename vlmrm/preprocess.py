"""Deprecated alias of :mod:`vlmrm.backends.preprocess`, where the backend contract moved.

It keeps plugins written against ``vlmrm.preprocess`` working for one release, with a warning.
"""

from __future__ import annotations

import importlib
import warnings

warnings.warn("vlmrm.preprocess moved to vlmrm.backends.preprocess; the old path will be removed in the "
              "next release. Import from vlmrm.backends.preprocess.", DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(importlib.import_module("vlmrm.backends.preprocess"), name)
