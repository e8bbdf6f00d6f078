"""Deprecated alias of :mod:`vlmrm.backends.hub`, where the backend contract moved.

It keeps plugins written against ``vlmrm.hub`` working for one release, with a warning.
"""

from __future__ import annotations

import importlib
import warnings

warnings.warn("vlmrm.hub moved to vlmrm.backends.hub; the old path will be removed in the "
              "next release. Import from vlmrm.backends.hub.", DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(importlib.import_module("vlmrm.backends.hub"), name)
