"""Under DDP the global quantities (env.num_envs, agent.batch_size, agent.learning_starts) are
split across ranks, so N ranks run the same experiment as one learner."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import QUIET, ROOT, scalars


def test_two_cpu_ranks_split_envs_batch_and_learning_starts(tmp_path):
    # Lightning's DDP launcher re-runs the command for rank 1, so run a script, not a function.
    out = tmp_path / "runs"
    cmd = [sys.executable, str(ROOT / "tests" / "rl" / "ddp_probe.py"), str(tmp_path), *QUIET,
           f"logging.output_dir={out}", "logging.run_name=ddp", "reward.backend=ground_truth",
           "env.num_envs=4", "agent.batch_size=64", "agent.learning_starts=64",
           "agent.train_freq=8", "agent.gradient_steps=2", "agent.total_env_steps=320",
           "agent.hidden_sizes=[32,32]", "agent.eval_every=0", "agent.loss_impl=fast",
           "trainer.strategy=ddp",
           "trainer.devices=2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        assert rank["world_size"] == 2
        assert set(rank["envs_per_batch"]) == {2}  # 4 envs over 2 ranks
        assert set(rank["sample_sizes"]) == {32}  # 64 samples per update over 2 ranks
        # Random actions until 64 env steps over both ranks (32 each), then the policy.
        assert min(rank["policy_steps"]) == 64
        # The first update once more than 64 steps are collected: both ranks at once.
        assert rank["update_steps"][0] == 96
    assert ranks[0]["update_steps"] == ranks[1]["update_steps"]
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # bit-identical parameters
    steps = [v for _, v in scalars(out / "ddp")["env_steps"]]
    assert steps[0] == 32 and steps[-1] == 320  # 2 envs x 8 steps x 2 ranks per iteration
    assert (out / "ddp" / "checkpoints" / "last.ckpt").is_file()
    assert done.stdout.count("vlmrm: run finished") == 1  # reported once, by rank 0
