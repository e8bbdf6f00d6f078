"""Reward backends shipped with vlmrm (installed as ``vlmrm.backends``).

Each module is imported only when its backend is used; see :mod:`vlmrm.backends.registry`.
"""
