"""Replay buffer save/load: same contents, same write position, atomic, pickle-free."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import TensorDictReplayBuffer

from vlmrm.collect.pipeline import make_replay_buffer
from vlmrm.sac.replay_state import load_replay, replay_bytes, save_replay

SIZE = 50
CPU = torch.device("cpu")


def transitions(n: int, start: int = 0) -> TensorDict:
    """``n`` distinguishable transitions (row i carries the number start + i)."""
    step = torch.arange(start, start + n, dtype=torch.float32)[:, None]
    return TensorDict({
        "observation": step.expand(n, 3).clone(), "action": -step,
        "next": {"observation": step.expand(n, 3) + 1, "reward": step * 0.5,
                 "done": (step % 20 == 0)},
    }, batch_size=[n])


def filled(n: int) -> TensorDictReplayBuffer:
    buffer = make_replay_buffer(SIZE, CPU)
    for start in range(0, n, 10):  # in batches, as training stores them
        buffer.extend(transitions(min(10, n - start), start))
    return buffer


def assert_same(a: TensorDictReplayBuffer, b: TensorDictReplayBuffer) -> None:
    assert len(a) == len(b)
    assert a.writer.state_dict() == b.writer.state_dict()
    if len(a):
        assert (a[:] == b[:]).all()


def saved_and_loaded(buffer: TensorDictReplayBuffer, path: Path) -> TensorDictReplayBuffer:
    save_replay(buffer, path)
    fresh = make_replay_buffer(SIZE, CPU)
    load_replay(fresh, path)
    return fresh


@pytest.mark.parametrize("n", [130, 30, 0], ids=["wrapped", "partial", "empty"])
def test_buffer_round_trips_and_continues_in_place(tmp_path: Path, n: int):
    original = filled(n)
    loaded = saved_and_loaded(original, tmp_path / "replay")
    assert_same(original, loaded)
    for buffer in (original, loaded):
        buffer.extend(transitions(7, 1000))  # 130 stored: overwrites rows 30..36
    assert_same(original, loaded)
    torch.manual_seed(3)
    want = original.sample(8)
    torch.manual_seed(3)
    assert (loaded.sample(8) == want).all()


def test_wrapped_buffer_keeps_the_newest_transitions(tmp_path: Path):
    loaded = saved_and_loaded(filled(130), tmp_path / "replay")
    assert loaded.writer.state_dict()["_cursor"] == 130 % SIZE
    assert set(loaded[:]["action"].neg().int().flatten().tolist()) == set(range(80, 130))


def test_saved_buffer_is_json_and_raw_files_only(tmp_path: Path):
    path = tmp_path / "replay"
    save_replay(filled(30), path)
    files = [f for f in path.rglob("*") if f.is_file()]
    assert {f.suffix for f in files} == {".json", ".memmap"}  # no pickle sidecar
    for f in files:
        if f.suffix == ".json":
            json.loads(f.read_text())
    # 30 rows of 3 + 1 + 3 + 1 float32 and a bool, plus the buffer's int64 index.
    assert replay_bytes(path) >= 30 * (8 * 4 + 1 + 8)
    assert replay_bytes(path) < replay_bytes_of(130, tmp_path / "full")


def replay_bytes_of(n: int, path: Path) -> int:
    save_replay(filled(n), path)
    return replay_bytes(path)


def test_failed_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(TensorDict, "memmap", broken)
    with pytest.raises(OSError, match="disk full"):
        save_replay(filled(30), tmp_path / "replay")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_or_existing_folders_are_refused(tmp_path: Path):
    half = tmp_path / "half"
    (half / "data").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="not a saved replay buffer"):
        load_replay(make_replay_buffer(SIZE, CPU), half)
    with pytest.raises(FileExistsError):
        save_replay(filled(10), half)


def test_size_mismatch_and_non_empty_buffer_are_refused(tmp_path: Path):
    path = tmp_path / "replay"
    save_replay(filled(30), path)
    with pytest.raises(ValueError, match="size 50; this buffer has size 60"):
        load_replay(make_replay_buffer(60, CPU), path)
    with pytest.raises(ValueError, match="empty buffer"):
        load_replay(filled(10), path)
