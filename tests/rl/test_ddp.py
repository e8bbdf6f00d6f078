"""Under DDP the global quantities (env.num_envs, agent.batch_size, agent.learning_starts,
agent.buffer_size) are split across ranks, and every rank draws its own random numbers, so N
ranks run the same experiment as one learner: under Lightning's launcher and under torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest

from tests.helpers import CONFIGS, QUIET, ROOT, scalars

PROBE = str(ROOT / "tests" / "rl" / "ddp_probe.py")
#: Two CPU ranks (gloo), each with 2 of the 4 envs, collected in a process of its own.
DDP_RUN = (*QUIET, "agent.collector=process", "reward.backend=ground_truth", "env.num_envs=4",
           "agent.batch_size=64",
           "agent.learning_starts=64", "agent.train_freq=8", "agent.gradient_steps=2",
           "agent.total_env_steps=320", "agent.hidden_sizes=[32,32]", "agent.eval_every=0",
           "agent.loss_impl=fast", "trainer.strategy=ddp", "trainer.devices=2")


def test_two_cpu_ranks_split_the_run_and_draw_their_own_random_numbers(tmp_path):
    # Lightning's DDP launcher re-runs the command for rank 1, so run a script, not a function.
    # Continuous actions (the loss draws reparameterisation noise), collected in turn from
    # torch's global generator (agent.overlap=false): what every rank once drew alike.
    out = tmp_path / "runs"
    cmd = [sys.executable, PROBE, str(tmp_path), *DDP_RUN, "env.id=Pendulum-v1",
           "agent.overlap=false", "agent.buffer_size=1000", f"logging.output_dir={out}",
           "logging.run_name=ddp"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        assert rank["world_size"] == 2
        assert set(rank["envs_per_batch"]) == {2}  # 4 envs over 2 ranks
        assert set(rank["sample_sizes"]) == {32}  # 64 samples per update over 2 ranks
        # Random actions until 64 env steps over both ranks: 2 batches of 16 per rank.
        assert rank["random_batches"] == 2
        # The first update once more than 64 steps are collected: both ranks at once.
        assert rank["update_steps"][0] == 96
    assert ranks[0]["update_steps"] == ranks[1]["update_steps"]
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # bit-identical parameters
    # One run's buffer, held in shares; each rank's own exploration and loss noise.
    assert sum(rank["buffer_capacity"] for rank in ranks) == 1000
    assert ranks[0]["first_actions"] != ranks[1]["first_actions"]
    assert len(ranks[0]["first_noise"]) == 16
    assert ranks[0]["first_noise"] != ranks[1]["first_noise"]
    steps = [v for _, v in scalars(out / "ddp")["env_steps"]]
    assert steps[0] == 32 and steps[-1] == 320  # 2 envs x 8 steps x 2 ranks per iteration
    assert (out / "ddp" / "checkpoints" / "last.ckpt").is_file()
    assert done.stdout.count("vlmrm: run finished") == 1  # reported once, by rank 0


@pytest.mark.slow
def test_sigterm_stops_both_ranks_together_and_resume_matches_the_straight_run(tmp_path):
    """SIGTERM reaches rank 0 (Lightning's launcher passes it on to rank 1): both ranks stop
    at the same iteration with their data state saved; the resumed DDP run ends with the
    parameters of a DDP run that never stopped."""
    out = tmp_path / "runs"
    straight = subprocess.run([sys.executable, PROBE, str(tmp_path / "straight"), *DDP_RUN,
                               f"logging.output_dir={out}", "logging.run_name=straight"],
                              capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-3000:]
    stopped = subprocess.run([sys.executable, PROBE, str(tmp_path / "stopped"), "--sigterm-at",
                              "128", *DDP_RUN, f"logging.output_dir={out}",
                              "logging.run_name=split"],
                             capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    ranks = [json.loads((tmp_path / "stopped" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["interrupted"] and ranks[1]["interrupted"]
    assert ranks[0]["env_steps"] == ranks[1]["env_steps"] < 320
    ckpts = out / "split" / "checkpoints"
    assert {p.name for p in ckpts.glob("*.data-r*")} == {
        f"step-{ranks[0]['env_steps']}.data-r0", f"step-{ranks[0]['env_steps']}.data-r1"}
    resumed = subprocess.run([sys.executable, PROBE, str(tmp_path / "resumed"), "--resume",
                              str(out / "split")], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = [json.loads((tmp_path / d / "rank0.json").read_text()) for d in ("straight", "resumed")]
    assert final[1]["env_steps"] == final[0]["env_steps"] == 320
    assert final[1]["checksum"] == final[0]["checksum"]
    # Every logged point of the stopped-and-resumed run is the straight run's (timings aside).
    ours, theirs = (_logged_points(out / name) for name in ("split", "straight"))
    assert ours.keys() == theirs.keys() and "loss/critic" in ours
    for tag, points in theirs.items():
        assert ours[tag] == points, tag


def _logged_points(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar point but timings (perf/...), which no two runs share."""
    return {tag: points for tag, points in scalars(run_dir).items()
            if not tag.startswith("perf/")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch_like_torchrun(run_id: str, args: list[str]) -> list[subprocess.CompletedProcess]:
    """``vlmrm fit ARGS`` as ``torchrun --nproc-per-node=2 --rdzv-id=RUN_ID`` starts it: two
    processes, each told its rank and the rendezvous in environment variables."""
    return _launch(args, lambda rank: {
        "RANK": str(rank), "LOCAL_RANK": str(rank), "GROUP_RANK": "0", "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": run_id})


def _launch(args: list[str], rank_env) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               **rank_env(rank)}
        procs.append(subprocess.Popen([sys.executable, "-m", "vlmrm", "fit", *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return done


@pytest.mark.slow  # end to end, minutes of the fast suite's budget; CI runs it
def test_a_torchrun_launch_writes_one_run_directory_that_resumes(tmp_path):
    """No logging.run_name: both ranks name the run after torchrun's run id; rank 0 creates
    it, rank 1 writes its data state into it, and `--resume last` continues it."""
    out = tmp_path / "runs"
    run_id = uuid.uuid4().hex[:12]
    args = ["--config", str(CONFIGS / "cartpole.yaml"), *DDP_RUN, "agent.collector=thread",
            "agent.total_env_steps=96", "logging.checkpoint_every=1000000",
            f"logging.output_dir={out}"]
    first = _launch_like_torchrun(run_id, args)
    for rank, done in enumerate(first):
        assert done.returncode == 0, f"rank {rank}: {done.stderr[-3000:]}"
    run = out / f"cartpole-torchrun-{run_id}"
    assert [p.name for p in out.iterdir()] == [run.name]
    assert {p.name for p in (run / "checkpoints").iterdir()} == {
        "last.ckpt", "step-96.data-r0", "step-96.data-r1"}
    resumed = _launch_like_torchrun(run_id, ["--resume", "last", *args,
                                             "agent.total_env_steps=128"])
    for rank, done in enumerate(resumed):
        assert done.returncode == 0, f"rank {rank}: {done.stderr[-3000:]}"
    assert "run finished after 128 env steps" in resumed[0].stdout
    assert "run finished" not in resumed[1].stdout  # reported once, by rank 0
    assert [p.name for p in out.iterdir()] == [run.name]
    assert [v for _, v in scalars(run)["env_steps"]] == [32, 64, 96, 128]


@pytest.mark.slow
def test_an_srun_launch_writes_one_run_directory(tmp_path):
    """Two tasks as `srun --ntasks=2` starts them (SLURM's variables; Lightning's SLURM
    environment): one run directory named after the job and step, both ranks' data in it."""
    out = tmp_path / "runs"
    args = ["--config", str(CONFIGS / "cartpole.yaml"), *DDP_RUN, "agent.collector=thread",
            "agent.total_env_steps=96", "logging.checkpoint_every=1000000",
            f"logging.output_dir={out}"]
    done = _launch(args, lambda rank: {
        "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1",
        "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), "SLURM_NODEID": "0",
        "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "3", "SLURM_JOB_NAME": "vlmrm-test"})
    for rank, result in enumerate(done):
        assert result.returncode == 0, f"rank {rank}: {result.stderr[-3000:]}"
    run = out / "cartpole-slurm4242.3"
    assert [p.name for p in out.iterdir()] == [run.name]
    assert {p.name for p in (run / "checkpoints").iterdir()} == {
        "last.ckpt", "step-96.data-r0", "step-96.data-r1"}


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_fork"])
def test_strategies_that_start_ranks_inside_fit_are_refused_before_a_run_starts(strategy,
                                                                                 tmp_path):
    """Each rank builds its envs and replay buffer before fit, in its own process: a
    launcher that forks or spawns the ranks from inside fit would hand them rank 0's."""
    from vlmrm.config import load_config
    from vlmrm.errors import ConfigError
    from vlmrm.run.build import make_trainer

    cfg = load_config(CONFIGS / "quickstart.yaml", [
        *DDP_RUN, f"trainer.strategy={strategy}", "trainer.accelerator=cpu"])
    with pytest.raises(ConfigError, match=f"trainer.strategy='{strategy}'.*trainer.strategy=ddp"):
        make_trainer(cfg, tmp_path / "run")
