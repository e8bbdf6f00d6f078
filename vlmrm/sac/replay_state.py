"""Pickle-free save and load of the replay buffer :func:`vlmrm.collect.pipeline.make_replay_buffer`
builds (``LazyTensorStorage``, random sampler, round-robin writer).

A saved buffer is a folder: ``meta.json`` (sizes and the writer's cursor) and, once anything
is stored, ``data/``, the stored transitions in tensordict's memory-mapped format (JSON
metadata plus raw tensor files; loaded with ``allow_pickle=False``). The folder is written
under a temporary name beside ``path`` and renamed when complete, so a folder at ``path``
is always whole.

The random sampler keeps no state (it draws from torch's global generator).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer, TensorDictRoundRobinWriter

from vlmrm.fileio import atomic_dir

#: Bumped when the layout of a saved buffer changes.
FORMAT = 1
META = "meta.json"
DATA = "data"


def _parts(buffer: TensorDictReplayBuffer) -> tuple[LazyTensorStorage, TensorDictRoundRobinWriter]:
    storage, writer = buffer.storage, buffer.writer
    # Exact types: a subclass may keep state this module does not save.
    if type(storage) is not LazyTensorStorage or type(writer) is not TensorDictRoundRobinWriter:
        raise ValueError(f"can only save a LazyTensorStorage with a TensorDictRoundRobinWriter, not "
                         f"{type(storage).__name__} with {type(writer).__name__}")
    return storage, writer


def save_replay(buffer: TensorDictReplayBuffer, path: Path) -> None:
    """Write ``buffer``'s transitions and write position to the new folder ``path``.

    ``path`` must be absent or an empty folder (:func:`vlmrm.fileio.atomic_dir`)."""
    storage, writer = _parts(buffer)
    length = len(storage)
    meta = {"format": FORMAT, "max_size": storage.max_size, "length": length,
            **{k.lstrip("_"): int(v) for k, v in writer.state_dict().items()}}
    with atomic_dir(path) as tmp:
        if length:
            # Round-robin writes fill rows 0..length-1 first: those are all that is stored.
            storage.get(torch.arange(length)).cpu().memmap(tmp / DATA)
        (tmp / META).write_text(json.dumps(meta))


def load_replay(buffer: TensorDictReplayBuffer, path: Path) -> None:
    """Fill ``buffer`` (empty, same size as the saved one) from :func:`save_replay`'s folder."""
    storage, writer = _parts(buffer)
    meta = _read_meta(Path(path))
    if meta["max_size"] != storage.max_size:
        raise ValueError(f"{str(path)!r} holds a buffer of size {meta['max_size']}; this "
                         f"buffer has size {storage.max_size}")
    if len(storage):
        raise ValueError("load_replay needs an empty buffer")
    length = meta["length"]
    if length:
        data = TensorDict.load_memmap(Path(path) / DATA, allow_pickle=False)
        if data.batch_size != torch.Size([length]):
            raise ValueError(f"{str(path)!r}: {data.batch_size[0]} rows stored, "
                             f"meta.json says {length}")
        storage.set(torch.arange(length), data)  # copies: the files may go away
    writer.load_state_dict({"_cursor": meta["cursor"], "_write_count": meta["write_count"]})


def _read_meta(path: Path) -> dict:
    meta_file = path / META
    if not meta_file.is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a saved replay buffer (no {META})")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{str(meta_file)!r} has format {meta.get('format')!r}, "
                         f"expected {FORMAT}")
    return meta


def replay_bytes(path: Path) -> int:
    """Bytes on disk of a saved buffer (all its files)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
