"""No run overwrites another: run directories are created atomically, never shared."""

from __future__ import annotations

import pytest

import vlmrm.run.rundir
from tests.helpers import CONFIGS, QUIET, cli_exit, preloaded_processes
from vlmrm.cli import main
from vlmrm.config import load_config
from vlmrm.run.rundir import RUN_DIR_ENV, make_run_dir

TINY_RUN = ("reward.backend=ground_truth", "agent.total_env_steps=64",
            "agent.learning_starts=32", "agent.hidden_sizes=[16,16]", "agent.batch_size=16",
            "agent.eval_every=0")


@pytest.fixture
def clean_run_dir_env(monkeypatch):
    """make_run_dir publishes its choice for DDP workers; undo that after each test."""
    monkeypatch.setenv(RUN_DIR_ENV, "")
    yield
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)


def test_same_second_automatic_names_get_suffixes(tmp_path, monkeypatch, clean_run_dir_env):
    monkeypatch.setattr(vlmrm.run.rundir.time, "strftime", lambda fmt: "20260101-120000")
    cfg = load_config(CONFIGS / "cartpole.yaml", [f"logging.output_dir={tmp_path}"])
    made = []
    for _ in range(3):
        monkeypatch.setenv(RUN_DIR_ENV, "")  # each call stands for a separate launch
        made.append(make_run_dir(cfg, "configs/cartpole.yaml"))
    assert [p.name for p in made] == ["cartpole-20260101-120000", "cartpole-20260101-120000-2",
                                      "cartpole-20260101-120000-3"]
    assert all(p.is_dir() for p in made)


def test_an_existing_explicit_run_name_is_refused_and_left_untouched(tmp_path, capsys):
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "config.yaml").write_text("from another run\n")
    code = main(["fit", "--config", str(CONFIGS / "cartpole.yaml"), *QUIET, *TINY_RUN,
                 f"logging.output_dir={tmp_path}", "logging.run_name=mine"])
    err = capsys.readouterr().err
    assert code == 2
    assert "logging.run_name='mine'" in err and "already exists" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert [p.name for p in existing.iterdir()] == ["config.yaml"]


def test_trainer_settings_lightning_rejects_leave_no_run_directory(tmp_path, capsys):
    code = main(["fit", "--config", str(CONFIGS / "cartpole.yaml"), *QUIET, *TINY_RUN,
                 f"logging.output_dir={tmp_path}", "trainer.strategy=ddpx"])
    err = capsys.readouterr().err
    assert code == 2 and "trainer.strategy='ddpx'" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_two_concurrent_runs_of_one_config_end_in_two_complete_run_dirs(tmp_path):
    """Two `vlmrm fit` processes started within milliseconds (so, almost always, in the same
    second: the collision the suffix exists for)."""
    out = tmp_path / "runs"
    argv = ["fit", "--config", str(CONFIGS / "cartpole.yaml"), *QUIET, *TINY_RUN,
            f"logging.output_dir={out}"]
    ctx = preloaded_processes()
    procs = [ctx.Process(target=cli_exit, args=(argv,)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(300)
        assert proc.exitcode == 0
    runs = sorted(p.name for p in out.iterdir())
    assert len(runs) == 2 and runs[0].startswith("cartpole-"), runs
    if runs[1].startswith(runs[0]):  # same second: the second run took the suffix
        assert runs[1] == f"{runs[0]}-2"
    for run in runs:
        assert (out / run / "config.yaml").is_file()
        assert (out / run / "checkpoints" / "last.ckpt").is_file()
        assert len(list((out / run).glob("events.out.tfevents.*"))) == 1
