"""Deprecated alias of :mod:`vlmrm.backends.base`, where the backend contract moved.

It keeps plugins written against ``vlmrm.backend`` working for one release, with a warning.
"""

from __future__ import annotations

import importlib
import warnings

warnings.warn("vlmrm.backend moved to vlmrm.backends.base; the old path will be removed in the "
              "next release. Import from vlmrm.backends.base.", DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(importlib.import_module("vlmrm.backends.base"), name)
