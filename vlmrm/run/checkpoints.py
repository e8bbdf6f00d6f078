"""Checkpoint files: atomic and durable writes, which ones exist, pruning, finite-state checks.

A checkpoint exists under its final name only once it is complete. Lightning writes through
:class:`AtomicCheckpointIO`: a hidden temporary file (``.step-N.<pid>.tmp.ckpt``), flushed to
disk, then renamed. A writer killed mid-write (SIGKILL, power loss) leaves at most that
hidden file, never a partial ``step-N.ckpt``; the previous checkpoints are untouched.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vlmrm.fileio import TMP_MARK, atomic_path

LAST = "last.ckpt"
_STEP = re.compile(r"^step-(\d+)\.ckpt$")
_BESIDE = re.compile(r"^step-(\d+)\.(?!ckpt$).+$")
_PARTIAL = re.compile(rf"^\..+\.(\d+){re.escape(TMP_MARK)}")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoint IO, written to a temporary name, fsynced, then
    renamed. (Lightning's own writer serialises to memory first and moves the file without
    an fsync; this streams to disk and survives a power loss after the rename.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(path, durable=True) as tmp:
            torch.save(checkpoint, tmp)


def step_of(path: Path) -> int | None:
    """N for ``step-N.ckpt``, else None."""
    match = _STEP.match(path.name)
    return int(match.group(1)) if match else None


def step_checkpoints(dirpath: Path) -> list[Path]:
    """The complete ``step-N.ckpt`` files, oldest (lowest N) first."""
    if not dirpath.is_dir():
        return []
    found = [p for p in dirpath.iterdir() if step_of(p) is not None]
    return sorted(found, key=lambda p: step_of(p))


def newest_checkpoint(dirpath: Path) -> Path | None:
    """The most recently completed checkpoint (``step-N.ckpt`` or ``last.ckpt``), or None.

    By completion time rather than step: ``last.ckpt`` and a step checkpoint can hold the
    same step, and a resumed run writes step checkpoints after an older ``last.ckpt``.
    """
    candidates = step_checkpoints(dirpath)
    if (dirpath / LAST).is_file():
        candidates.append(dirpath / LAST)
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, step_of(p) or 0))


def prune(dirpath: Path, keep: int | None) -> list[Path]:
    """Delete all but the newest ``keep`` step checkpoints (None keeps all), and anything
    stored beside a deleted one (``step-N.<other>``, e.g. a replay buffer); ``last.ckpt``
    is never touched. Call it only after the newest checkpoint is complete."""
    if keep is None:
        return []
    steps = step_checkpoints(dirpath)
    doomed = steps[:-keep]
    for path in doomed:  # the .ckpt first: it is what makes a step count as saved
        path.unlink(missing_ok=True)
    if len(steps) >= keep:
        oldest_kept = step_of(steps[-keep])
        doomed += _remove_beside(dirpath, lambda step: step < oldest_kept)
    return doomed


def _remove_beside(dirpath: Path, doomed: Callable[[int], bool]) -> list[Path]:
    """Delete ``step-N.<anything but ckpt>`` files and folders whose N is ``doomed``
    (also those a killed pruner left without their checkpoint)."""
    removed = []
    for path in dirpath.iterdir():
        match = _BESIDE.match(path.name)
        if not (match and doomed(int(match.group(1)))):
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def remove_partials(dirpath: Path) -> list[Path]:
    """Delete temporary files other processes left behind (a writer killed mid-write).

    Run directories are never shared between live runs, so any other process's
    temporary file here belongs to a dead writer.
    """
    if not dirpath.is_dir():
        return []
    mine = str(os.getpid())
    stale = [p for p in dirpath.iterdir()
             if (m := _PARTIAL.match(p.name)) and m.group(1) != mine]
    for path in stale:  # files of torch.save, folders of a rank's data state
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def nonfinite_tensors(named: Iterable[tuple[str, Any]]) -> list[str]:
    """Names of the floating-point tensors in ``named`` holding a NaN or an infinity."""
    bad = []
    for name, value in named:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
            if not bool(torch.isfinite(value).all()):
                bad.append(name)
    return bad


def optimizer_tensors(optimizers: Iterable[torch.optim.Optimizer]
                      ) -> Iterable[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every tensor of the optimizers' states (Adam's moments, ...)."""
    for i, optimizer in enumerate(optimizers):
        for j, state in enumerate(optimizer.state.values()):
            for key, value in state.items():
                yield f"optimizer{i}.param{j}.{key}", value
