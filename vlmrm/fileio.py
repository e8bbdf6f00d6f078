"""Writing files so that readers never see a partial one.

Every writer in vlmrm (configs, pictures, videos, scene files, checkpoints) goes through
:func:`atomic_path`: it writes to a temporary name in the same folder and renames it over
the target, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

#: Marks temporary names made by :func:`atomic_path`: ``.<stem>.<pid>.tmp<suffix>``.
TMP_MARK = ".tmp"


def temporary_name(path: Path, pid: int | None = None) -> Path:
    """The hidden name :func:`atomic_path` writes ``path`` under, for process ``pid``."""
    return path.with_name(f".{path.stem}.{os.getpid() if pid is None else pid}{TMP_MARK}"
                          f"{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary name beside ``path``; on success it replaces ``path`` in one
    rename, on failure it is removed.

    ``durable``: flush the file's data to disk before the rename and the directory entry
    after it. Without this, a power loss soon after the rename can leave the new name
    pointing at an empty or partial file (the rename may reach the disk before the data).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def is_new_dir(path: str | os.PathLike) -> bool:
    """``path`` is absent or an empty folder: somewhere :func:`atomic_dir` may write."""
    path = Path(path)
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` (and ``root``) to disk, folders after
    their contents: once this returns, a power loss leaves the tree as it is now."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` to fill; on success it becomes ``path`` in
    one rename (``path`` must be absent or empty), on failure it is removed with its files.

    ``durable``: flush every file and folder to disk before the rename, and the parent
    folder after it (as :func:`atomic_path`): the rename cannot reach the disk before the
    data it names."""
    path = Path(path)
    if not is_new_dir(path):
        raise FileExistsError(f"{str(path)!r} exists and is not an empty folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if durable:
            fsync_tree(tmp)
        if path.exists():
            path.rmdir()  # empty (checked above); a rename cannot replace a folder
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
