"""The run's iteration arithmetic, in one place: what a config will cost before it runs, and
what the training loop reads as it runs (iterations left, learning starts, each rank's share).

Pure arithmetic over the config (no torch), following the training loop exactly: each
iteration collects ``train_freq`` steps of every env (all ranks together), then runs
``gradient_steps`` updates once more than ``learning_starts`` env steps are collected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vlmrm.backends.registry import GROUND_TRUTH
from vlmrm.config.schema import Config


@dataclass(frozen=True)
class RankShare:
    """One rank's share of the quantities that count all ranks together (``env.num_envs``,
    ``agent.batch_size``, ``agent.buffer_size``, ``agent.learning_starts``), so that N ranks
    run the same experiment as one (``check_global_split`` makes them divide)."""

    num_envs: int
    batch_size: int
    buffer_size: int
    learning_starts: int
    #: Batches collected with uniform random actions: ``learning_starts`` env steps rounded
    #: up to whole batches, as TorchRL's collectors count ``init_random_frames``.
    random_batches: int


@dataclass(frozen=True)
class RunPlan:
    """Built once by the wiring (:func:`plan_run`); counts are env steps of all ranks
    together unless they say otherwise."""

    iterations: int
    env_steps: int  # total_env_steps rounded up to whole iterations
    updates: int
    frames_to_score: int  # every collected step is rendered and scored once
    #: Env steps one iteration collects: ``train_freq`` steps of every env of every rank.
    per_iteration: int
    total_env_steps: int
    learning_starts: int
    world_size: int
    #: This process's rank's share (all ranks' are equal).
    share: RankShare

    def describe(self) -> str:
        return (f"{self.env_steps:,} env steps in {self.iterations:,} iterations, "
                f"{self.updates:,} SAC updates, {self.frames_to_score:,} frames to score")

    def iterations_left(self, env_steps: int) -> int:
        """Iterations still to run after ``env_steps`` (the last one may overshoot)."""
        return max(0, -(-(self.total_env_steps - env_steps) // self.per_iteration))

    def after_next(self, env_steps: int) -> int:
        """The env step count once the iteration starting at ``env_steps`` ends."""
        return env_steps + self.per_iteration

    def ends_run(self, env_steps: int) -> bool:
        """Whether the iteration starting at ``env_steps`` is the run's last."""
        return self.after_next(env_steps) >= self.total_env_steps

    def learning_started(self, env_steps: int) -> bool:
        """Updates begin once more than ``learning_starts`` env steps are collected."""
        return env_steps > self.learning_starts


def plan_run(cfg: Config, world_size: int = 1) -> RunPlan:
    """The plan of ``cfg`` run on ``world_size`` ranks (the whole-run counts do not depend on
    it; each rank's share does)."""
    a = cfg.agent
    per_iteration = a.train_freq * cfg.env.num_envs
    iterations = -(-a.total_env_steps // per_iteration)
    # Iteration k (1-based) ends at k * per_iteration env steps and updates if that is more
    # than learning_starts.
    silent = min(iterations, a.learning_starts // per_iteration)
    updates = (iterations - silent) * a.gradient_steps
    env_steps = iterations * per_iteration
    scored = 0 if cfg.reward.backend == GROUND_TRUTH else env_steps
    return RunPlan(iterations, env_steps, updates, scored, per_iteration, a.total_env_steps,
                   a.learning_starts, world_size, rank_share(cfg, world_size))


def rank_share(cfg: Config, world_size: int) -> RankShare:
    a = cfg.agent
    num_envs, learning_starts = cfg.env.num_envs // world_size, a.learning_starts // world_size
    per_batch = a.train_freq * num_envs
    random = math.ceil(learning_starts / per_batch) if learning_starts > 0 else 0
    return RankShare(num_envs, a.batch_size // world_size, a.buffer_size // world_size,
                     learning_starts, random)
