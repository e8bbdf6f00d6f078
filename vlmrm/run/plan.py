"""What a config will cost before it runs: iterations, updates and frames to score.

Pure arithmetic over the config (no torch), following the training loop exactly: each
iteration collects ``train_freq`` steps of every env (all ranks together), then runs
``gradient_steps`` updates once more than ``learning_starts`` env steps are collected.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlmrm.backends.registry import GROUND_TRUTH
from vlmrm.config.schema import Config


@dataclass(frozen=True)
class RunPlan:
    iterations: int
    env_steps: int  # total_env_steps rounded up to whole iterations
    updates: int
    frames_to_score: int  # every collected step is rendered and scored once

    def describe(self) -> str:
        return (f"{self.env_steps:,} env steps in {self.iterations:,} iterations, "
                f"{self.updates:,} SAC updates, {self.frames_to_score:,} frames to score")


def plan_run(cfg: Config) -> RunPlan:
    a = cfg.agent
    per_iteration = a.train_freq * cfg.env.num_envs
    iterations = -(-a.total_env_steps // per_iteration)
    # Iteration k (1-based) ends at k * per_iteration env steps and updates if that is more
    # than learning_starts.
    silent = min(iterations, a.learning_starts // per_iteration)
    updates = (iterations - silent) * a.gradient_steps
    env_steps = iterations * per_iteration
    scored = 0 if cfg.reward.backend == GROUND_TRUTH else env_steps
    return RunPlan(iterations, env_steps, updates, scored)
