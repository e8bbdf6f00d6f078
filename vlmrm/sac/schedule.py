"""Schedules counted in env steps (training iterations advance them by whole batches)."""

from __future__ import annotations


def crossed(every: int, before: int, now: int) -> bool:
    """True when a multiple of ``every`` lies in ``(before, now]``."""
    return now // every > before // every
