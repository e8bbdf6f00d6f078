"""`vlmrm.run.plan`: the closed-form counts agree with the loop the module runs on the plan,
and each rank's share is what the DDP ranks build."""

from __future__ import annotations

import pytest

from vlmrm.config import Config
from vlmrm.run.plan import plan_run


def config(total: int, learning_starts: int, train_freq: int, num_envs: int,
           gradient_steps: int = 3) -> Config:
    cfg = Config()
    a = cfg.agent
    a.total_env_steps, a.learning_starts, a.train_freq = total, learning_starts, train_freq
    a.gradient_steps, a.batch_size, a.buffer_size = gradient_steps, 64, 1000
    cfg.env.num_envs = num_envs
    return cfg


@pytest.mark.parametrize("total, learning_starts, train_freq, num_envs", [
    (40, 16, 4, 2), (41, 16, 4, 2), (100, 0, 1, 1), (100, 99, 10, 1), (96, 200, 8, 4),
    (320, 64, 8, 4)])
def test_counts_follow_the_loop_the_module_runs(total, learning_starts, train_freq, num_envs):
    plan = plan_run(config(total, learning_starts, train_freq, num_envs))
    # SACModule's loop: a dataloader of iterations_left(0) items; each collects one
    # iteration, then updates if learning has started.
    steps, iterations, updates = 0, 0, 0
    for _ in range(plan.iterations_left(0)):
        last = plan.ends_run(steps)
        steps = plan.after_next(steps)
        iterations += 1
        updates += 3 if plan.learning_started(steps) else 0
        assert last == (plan.iterations_left(steps) == 0)
    assert (iterations, steps, updates) == (plan.iterations, plan.env_steps, plan.updates)
    assert steps >= total > steps - plan.per_iteration


def test_each_rank_takes_an_equal_share():
    cfg = config(320, 64, 8, 4)
    one, two = plan_run(cfg).share, plan_run(cfg, world_size=2).share
    assert (one.num_envs, one.batch_size, one.buffer_size, one.learning_starts) == (4, 64, 1000,
                                                                                    64)
    assert (two.num_envs, two.batch_size, two.buffer_size, two.learning_starts) == (2, 32, 500,
                                                                                    32)
    # Random actions until learning_starts: 64 steps = 2 batches of 32 on one rank, and 2
    # batches of 16 per rank on two (tests/rl/test_ddp.py sees the same on real ranks).
    assert one.random_batches == two.random_batches == 2
    assert plan_run(config(320, 65, 8, 4)).share.random_batches == 3  # rounded up
    assert plan_run(config(320, 0, 8, 4)).share.random_batches == 0
    # The whole-run counts do not depend on how many ranks share the run.
    assert plan_run(cfg, world_size=2).updates == plan_run(cfg).updates
