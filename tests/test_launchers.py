"""Several ranks make one run: under torchrun or SLURM every rank agrees on one run directory
(or the run is refused), the replay buffer counts all ranks, and strategies that shard the
networks are refused. (The runs themselves: tests/rl/test_ddp.py.)"""

from __future__ import annotations

import pytest

from tests.helpers import CONFIGS, QUIET
from vlmrm.cli import main
from vlmrm.config import load_config
from vlmrm.errors import ConfigError
from vlmrm.run.rundir import RUN_DIR_ENV, make_run_dir

LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "SLURM_PROCID",
                 "SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_STEP_ID")
TORCHRUN = {"WORLD_SIZE": "2", "LOCAL_RANK": "0", "TORCHELASTIC_RUN_ID": "4f2a-9c"}
SLURM = {"SLURM_NTASKS": "2", "SLURM_JOB_ID": "81234", "SLURM_STEP_ID": "0"}


@pytest.fixture
def bare_env(monkeypatch):
    """No launcher variables from the machine running the tests; make_run_dir's published
    directory is undone after each test."""
    for var in LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(RUN_DIR_ENV, "")
    yield monkeypatch
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)


def _rank_dirs(monkeypatch, tmp_path, launcher: dict[str, str], rank_var: str,
               *overrides: str) -> list:
    """make_run_dir as each of two ranks sees it (rank 1 first: it must not need rank 0)."""
    cfg = load_config(CONFIGS / "cartpole.yaml", [f"logging.output_dir={tmp_path}", *overrides])
    made = {}
    for rank in (1, 0):
        monkeypatch.setenv(RUN_DIR_ENV, "")  # a separate process each
        for key, value in {**launcher, rank_var: str(rank)}.items():
            monkeypatch.setenv(key, value)
        made[rank] = make_run_dir(cfg, "configs/cartpole.yaml")
        if rank == 1:
            assert not made[1].exists()  # ranks other than 0 create nothing
    return [made[0], made[1]]


@pytest.mark.parametrize("launcher,rank_var,name", [
    (TORCHRUN, "RANK", "cartpole-torchrun-4f2a-9c"),
    (SLURM, "SLURM_PROCID", "cartpole-slurm81234.0"),
], ids=["torchrun", "slurm"])
def test_externally_launched_ranks_agree_on_one_run_directory(tmp_path, bare_env, launcher,
                                                              rank_var, name):
    rank0, rank1 = _rank_dirs(bare_env, tmp_path, launcher, rank_var)
    assert rank0 == rank1 == tmp_path / name
    assert rank0.is_dir() and [p.name for p in tmp_path.iterdir()] == [name]
    # The next launch of the same job id would write into this run: refused.
    bare_env.setenv(RUN_DIR_ENV, "")
    with pytest.raises(ConfigError, match="--resume"):
        make_run_dir(load_config(CONFIGS / "cartpole.yaml", [f"logging.output_dir={tmp_path}"]),
                     "configs/cartpole.yaml")


def test_an_explicit_run_name_wins_over_the_launchers_id(tmp_path, bare_env):
    rank0, rank1 = _rank_dirs(bare_env, tmp_path, SLURM, "SLURM_PROCID", "logging.run_name=mine")
    assert rank0 == rank1 == tmp_path / "mine"


@pytest.mark.parametrize("run_id", ["none", None], ids=["torchrun-default-id", "no-id"])
def test_a_launch_without_an_id_is_refused_with_exit_2_naming_run_name(tmp_path, bare_env,
                                                                        capsys, run_id):
    bare_env.setenv("RANK", "1")
    bare_env.setenv("WORLD_SIZE", "2")
    if run_id is not None:
        bare_env.setenv("TORCHELASTIC_RUN_ID", run_id)
    code = main(["fit", "--config", str(CONFIGS / "cartpole.yaml"), *QUIET,
                 "reward.backend=ground_truth", f"logging.output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "logging.run_name" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_single_process_launch_keeps_the_automatic_name(tmp_path, bare_env):
    bare_env.setenv("SLURM_PROCID", "0")
    bare_env.setenv("SLURM_NTASKS", "1")
    bare_env.setenv("SLURM_JOB_ID", "5")
    cfg = load_config(CONFIGS / "cartpole.yaml", [f"logging.output_dir={tmp_path}"])
    assert "slurm" not in make_run_dir(cfg, "configs/cartpole.yaml").name


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed_stage_2", "fsdp_cpu_offload"])
def test_sharding_strategies_are_refused_with_a_reason(strategy):
    with pytest.raises(ConfigError, match=f"trainer.strategy='{strategy}'.*parameter tensors"):
        load_config(CONFIGS / "cartpole.yaml", [f"trainer.strategy={strategy}"])
    for fine in ("auto", "ddp", "ddp_find_unused_parameters_true"):
        load_config(CONFIGS / "cartpole.yaml", [f"trainer.strategy={fine}"])


def test_buffer_size_counts_all_ranks_and_must_split_evenly():
    two_ranks = ["trainer.devices=2", "env.num_envs=2"]
    with pytest.raises(ConfigError, match="agent.buffer_size=1001 does not split evenly over 2"):
        load_config(CONFIGS / "cartpole.yaml", [*two_ranks, "agent.buffer_size=1001"])
    load_config(CONFIGS / "cartpole.yaml", [*two_ranks, "agent.buffer_size=1000"])
