"""Under DDP the global quantities (env.num_envs, agent.batch_size, agent.learning_starts) are
split across ranks, so N ranks run the same experiment as one learner."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import QUIET, ROOT, scalars

PROBE = str(ROOT / "tests" / "rl" / "ddp_probe.py")
#: Two CPU ranks (gloo), each with 2 of the 4 envs, collected in a process of its own.
DDP_RUN = (*QUIET, "agent.collector=process", "reward.backend=ground_truth", "env.num_envs=4",
           "agent.batch_size=64",
           "agent.learning_starts=64", "agent.train_freq=8", "agent.gradient_steps=2",
           "agent.total_env_steps=320", "agent.hidden_sizes=[32,32]", "agent.eval_every=0",
           "agent.loss_impl=fast", "trainer.strategy=ddp", "trainer.devices=2")


def test_two_cpu_ranks_split_envs_batch_and_learning_starts(tmp_path):
    # Lightning's DDP launcher re-runs the command for rank 1, so run a script, not a function.
    out = tmp_path / "runs"
    cmd = [sys.executable, PROBE, str(tmp_path), *DDP_RUN, f"logging.output_dir={out}",
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
