"""Checkpoint files: atomic writes that survive SIGKILL, pruning, and the finite-state guard."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import CONFIGS, QUIET, cli_exit, preloaded_processes
from vlmrm.commands.fit import fit
from vlmrm.run.checkpoints import (
    AtomicCheckpointIO,
    newest_checkpoint,
    prune,
    remove_partials,
    step_checkpoints,
)
from vlmrm.run.resume import plan_resume, resumable_checkpoint

KILLS = 6
#: Big enough networks that writing a checkpoint (~12 MB) takes most of each iteration.
WRITER = ("reward.backend=ground_truth", "agent.total_env_steps=1000000",
          "agent.learning_starts=16", "agent.train_freq=8", "agent.gradient_steps=1",
          "agent.hidden_sizes=[512,512]", "agent.batch_size=16", "agent.eval_every=0",
          "logging.checkpoint_every=8", "logging.keep_checkpoints=2")


def _entries(path: Path) -> set[str]:
    try:
        return set(os.listdir(path))
    except FileNotFoundError:
        return set()


def _wait_for(predicate, timeout: float = 120.0, poll: float = 0.001):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(poll)
    raise AssertionError("timed out waiting for the checkpoint writer")


def _next_write(proc, ckpts: Path) -> tuple[str, float]:
    """Wait for the writer to put a new entry in ``ckpts``: its name and when it appeared."""
    seen = _entries(ckpts)
    new = _wait_for(lambda: (_entries(ckpts) - seen) or not proc.is_alive())
    assert proc.is_alive(), f"the writer ended on its own ({proc.exitcode})"
    return sorted(new)[0], time.monotonic()


def _time_writes(proc, ckpts: Path, count: int) -> list[float]:
    """Let ``count`` checkpoint writes complete; how long each took: from its new entry to
    the next change of the folder (the rename, or pruning right after an in-place write)."""
    durations = []
    for _ in range(count):
        _, started = _next_write(proc, ckpts)
        during = _entries(ckpts)
        _wait_for(lambda d=during: _entries(ckpts) != d or not proc.is_alive())
        durations.append(time.monotonic() - started)
    return durations


def _kill_during_next_write(proc, ckpts: Path, delay: float) -> str:
    """SIGKILL ``proc`` ``delay`` seconds after its next write starts; returns the entry
    that write created."""
    entry, _ = _next_write(proc, ckpts)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    return entry


def _check_every_visible_checkpoint_loads(ckpts: Path) -> Path | None:
    """Every file under a final checkpoint name is complete, and so is every data-state
    folder under a final name; returns the newest checkpoint a run can resume from."""
    for path in [*step_checkpoints(ckpts), *ckpts.glob("last.ckpt")]:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert ckpt["vlmrm"]["env_steps"] == int(path.stem.removeprefix("step-"))
        assert any(k.startswith("actor.") for k in ckpt["state_dict"])
    for folder in ckpts.glob("step-*.data-r0"):
        assert (folder / "state.pt").is_file() and (folder / "replay" / "meta.json").is_file()
    newest = resumable_checkpoint(ckpts)
    assert newest == newest_checkpoint(ckpts) or newest is None
    return newest


def _resume_and_continue(run_dir: Path, newest: Path) -> None:
    """Resume the killed run from ``newest`` and train two more iterations."""
    steps = torch.load(newest, map_location="cpu", weights_only=True)["vlmrm"]["env_steps"]
    plan = plan_resume(str(run_dir), None, [f"agent.total_env_steps={steps + 16}",
                                            "logging.checkpoint_every=1000000"])
    assert plan.checkpoint == newest
    result = fit(None, resume=plan)
    assert result.env_steps == steps + 16 and not result.interrupted


@pytest.mark.slow  # end to end, minutes of the fast suite's budget; CI runs it
def test_sigkill_during_checkpoint_writes_leaves_the_newest_complete_checkpoint_loadable(
        tmp_path):
    """Real `vlmrm fit` writers (see :func:`preloaded_processes`), each SIGKILLed at a
    random moment of a checkpoint write (its data-state folder or its file, after 0-3
    complete writes); the newest complete checkpoint then resumes and trains on."""
    ctx = preloaded_processes()
    rng = random.Random(12)
    durations: list[float] = []
    mid_write = 0
    for k in range(KILLS):
        out, name = tmp_path / "runs", f"kill{k}"
        ckpts = out / name / "checkpoints"
        proc = ctx.Process(target=cli_exit, args=(["fit", "--config", str(CONFIGS / "cartpole.yaml"),
                                                   *QUIET, *WRITER, f"logging.output_dir={out}",
                                                   f"logging.run_name={name}"],))
        proc.start()
        try:
            # Each checkpoint is two writes (its data-state folder, then its file).
            durations += _time_writes(proc, ckpts, rng.randint(2, 6))
            typical = sorted(durations)[len(durations) // 2]
            entry = _kill_during_next_write(proc, ckpts, rng.uniform(0, 0.8 * typical))
        finally:
            if proc.is_alive():
                proc.kill()
        left = _entries(ckpts)
        mid_write += entry in left and entry.startswith(".")  # killed before the rename
        assert not any(n.startswith("step-") and not n.endswith((".ckpt", ".data-r0"))
                       for n in left)
        newest = _check_every_visible_checkpoint_loads(ckpts)
        if newest is not None:
            _resume_and_continue(out / name, newest)
        assert len(step_checkpoints(ckpts)) <= 3  # keep 2, plus one not yet pruned
        print(f"kill {k}: during the write of {entry!r} (typical write {typical:.3f} s); "
              f"newest complete checkpoint: {newest.name if newest else None}")
    # Most kills landed inside a write (its partial file was left under a temporary name):
    # an in-place writer would have left those partial files under checkpoint names.
    assert mid_write >= KILLS // 2, f"only {mid_write} of {KILLS} kills landed mid-write"


def test_prune_keeps_the_newest_and_what_is_stored_beside_them_and_never_last(tmp_path):
    for step in (8, 16, 24, 160, 1600):
        (tmp_path / f"step-{step}.ckpt").write_text("x")
        (tmp_path / f"step-{step}.replay").mkdir()  # e.g. a replay buffer beside it
    (tmp_path / "step-4.replay").mkdir()  # left by a pruner killed between the two deletes
    (tmp_path / "last.ckpt").write_text("x")
    removed = prune(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == [
        "step-16.ckpt", "step-16.replay", "step-24.ckpt", "step-24.replay", "step-4.replay",
        "step-8.ckpt", "step-8.replay"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last.ckpt", "step-160.ckpt", "step-160.replay", "step-1600.ckpt", "step-1600.replay"]
    assert prune(tmp_path, keep=None) == []


def test_partial_files_of_dead_writers_are_removed_but_not_our_own(tmp_path):
    (tmp_path / ".step-8.99999999.tmp.ckpt").write_text("partial")
    ours = tmp_path / f".step-16.{os.getpid()}.tmp.ckpt"
    ours.write_text("being written")
    (tmp_path / "step-8.ckpt").write_text("complete")
    assert [p.name for p in remove_partials(tmp_path)] == [".step-8.99999999.tmp.ckpt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [ours.name, "step-8.ckpt"]


def test_a_failed_write_leaves_the_previous_checkpoint_and_no_partial_file(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "step-8.ckpt"
    io.save_checkpoint({"a": torch.ones(3)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot serialise this")

    with pytest.raises(RuntimeError, match="cannot serialise"):
        io.save_checkpoint({"a": torch.zeros(3), "b": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-8.ckpt"]
