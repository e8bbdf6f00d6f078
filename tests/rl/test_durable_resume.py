"""Durable and ordered checkpoints: a data-state folder reaches the disk before its name does,
resume uses only complete ones (by their manifest), and a checkpoint holds what the step's
video did, so a resumed run records nothing twice."""

from __future__ import annotations

import os

import pytest
import torch

import vlmrm.fileio
from tests.helpers import CONFIGS, QUIET
from vlmrm.commands.fit import fit
from vlmrm.config import load_config
from vlmrm.fileio import atomic_dir
from vlmrm.run.resume import plan_resume, resumable_checkpoint
from vlmrm.run.runstate import MANIFEST, data_state_problem

TINY = ("reward.backend=ground_truth", "agent.total_env_steps=64", "agent.learning_starts=16",
        "agent.batch_size=16", "agent.hidden_sizes=[16,16]", "agent.eval_every=0",
        "logging.checkpoint_every=32", "logging.video_every=32", *QUIET)


def test_a_durable_folder_is_flushed_file_by_file_before_its_rename(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(vlmrm.fileio, "_fsync", lambda p: events.append(("fsync", p.name)))
    real_replace = os.replace
    monkeypatch.setattr(vlmrm.fileio.os, "replace",
                        lambda a, b: (events.append(("rename", b.name)), real_replace(a, b)))
    with atomic_dir(tmp_path / "state", durable=True) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "rows.bin").write_bytes(b"x" * 10)
        (tmp / "state.pt").write_bytes(b"y")
    rename = events.index(("rename", "state"))
    before = {name for _, name in events[:rename]}
    assert {"rows.bin", "sub", "state.pt", tmp.name} <= before  # data first, then its folders
    assert events[:rename].index(("fsync", "rows.bin")) < events.index(("fsync", "sub"))
    assert events[rename + 1:] == [("fsync", tmp_path.name)]  # the rename itself, after


def _checkpoint_callbacks(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["callbacks"]


@pytest.mark.slow  # end to end, minutes of the fast suite's budget; CI runs it
def test_damaged_data_state_falls_back_and_a_resumed_run_records_no_video_twice(tmp_path):
    overrides = [*TINY, f"logging.output_dir={tmp_path}"]
    run = fit(load_config(CONFIGS / "cartpole.yaml", [*overrides, "logging.run_name=mine"]),
              "configs/cartpole.yaml").run_dir
    ckpts, videos = run / "checkpoints", run / "videos"
    assert sorted(p.name for p in videos.iterdir()) == ["step-32.mp4", "step-64.mp4"]
    # The checkpoint was taken after the step's video: it knows the video is done.
    recorder = next(v for k, v in _checkpoint_callbacks(ckpts / "step-32.ckpt").items()
                    if k.startswith("VideoRecorder"))
    assert recorder["recorded_at"] == 32

    # Every data-state folder lists its files; one cut short (a power loss, a bad copy)
    # is found, and resume falls back to the newest checkpoint whose data is whole.
    newest = ckpts / "step-64.data-r0"
    assert data_state_problem(newest) is None and (newest / MANIFEST).is_file()
    state = newest / "state.pt"
    state.write_bytes(state.read_bytes()[:100])
    assert "truncated" in data_state_problem(newest)
    assert resumable_checkpoint(ckpts) == ckpts / "step-32.ckpt"

    # `--resume last` finds the run although it is named by logging.run_name; it continues
    # from step 32, whose video exists: that video is not recorded again.
    (videos / "step-64.mp4").unlink()
    kept = (videos / "step-32.mp4").stat().st_mtime_ns
    plan = plan_resume("last", str(CONFIGS / "cartpole.yaml"), overrides)
    assert plan.run_dir == run and plan.checkpoint == ckpts / "step-32.ckpt"
    assert fit(None, resume=plan).env_steps == 64
    assert sorted(p.name for p in videos.iterdir()) == ["step-32.mp4", "step-64.mp4"]
    assert (videos / "step-32.mp4").stat().st_mtime_ns == kept
    assert data_state_problem(newest) is None  # the damaged folder was written anew
