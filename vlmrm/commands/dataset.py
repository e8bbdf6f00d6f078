"""``vlmrm dataset``: a labelled frame set from rollouts, for ``vlmrm evaluate-reward --frames``
and for people to relabel.

Random-policy rollouts (``--config``) or the deterministic rollouts of a trained agent
(``--checkpoint``, loaded with :func:`vlmrm.commands.play.load_agent`), rendered at the env's own size
(``env.render_size`` where the env takes one), in the episodes ``vlmrm play`` would run
(:class:`vlmrm.seeds.SeedPurpose` ``DATASET`` has play's seed). Labels: ``score`` = the env's reward at that step (its ground truth), ``success`` = the
env's ``is_success`` where it reports one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from vlmrm.commands.play import load_agent
from vlmrm.config import Config
from vlmrm.envs.factory import SeedPurpose, env_for, episode_cap
from vlmrm.evaluation.frameset import FILE, LABELS, SCORE, SUCCESS, write_frameset
from vlmrm.media import as_uint8_frames
from vlmrm.run.evaluate import run_episode


def write_dataset(out: str | os.PathLike, episodes: int, stride: int, *,
                  cfg: Config | None = None, checkpoint: str | os.PathLike | None = None,
                  overrides: Sequence[str] = ()) -> str:
    """Record ``episodes`` episodes (every ``stride``-th step) into ``out``; a one-line
    description of what was written."""
    policy = None
    if checkpoint is not None:
        # The agent only: the reward model is not needed to act (and may be large).
        cfg, module, _ = load_agent(checkpoint, [*overrides, "reward.backend=ground_truth"])
        policy = module.actor
    env = env_for(cfg, SeedPurpose.DATASET)
    try:
        with torch.random.fork_rng():  # random actions from the config's seed: repeatable
            torch.manual_seed(cfg.seed)
            rows = write_frameset(out, _frames(env, policy, cfg, episodes, stride))
    finally:
        env.close()
    goals = sum(int(r.get(SUCCESS, 0)) for r in rows)
    labels = ", ".join(k for k in rows[0] if k != FILE)
    source = "the agent in " + str(checkpoint) if checkpoint else "a random policy"
    success = f" ({goals} labelled success)" if SUCCESS in rows[0] else ""
    plural = "s" if episodes != 1 else ""
    return (f"wrote {len(rows)} frames{success} from {episodes} episode{plural} of {source} to "
            f"{Path(out)}; {LABELS} columns: {FILE}, {labels}")


def _frames(env, policy, cfg: Config, episodes: int, stride: int
            ) -> Iterator[tuple[np.ndarray, dict[str, object]]]:
    """(frame, label row) pairs, one episode in memory at a time."""
    for e in range(episodes):
        ep = run_episode(env, policy, None, max_steps=episode_cap(cfg.env), keep_frames=True)
        frames = as_uint8_frames(ep.frames)
        for t in range(stride - 1, ep.length, stride):
            row: dict[str, object] = {FILE: f"ep{e:03d}-t{t + 1:04d}.png"}
            if ep.success is not None:
                row[SUCCESS] = int(bool(ep.success[t]))
            row[SCORE] = f"{float(ep.gt_rewards[t]):.6g}"
            row.update(episode=e, step=t + 1)
            yield frames[t], row
