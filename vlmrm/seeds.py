"""Where every generator's seed comes from: the run seed, the rank, and a named purpose.

A leaf module: the env factory, the learner (:mod:`vlmrm.sac.update`) and the run state all
derive seeds here, so two purposes never draw the same stream.
"""

from __future__ import annotations

from enum import IntEnum


class SeedOffset(IntEnum):
    """Each env's seed is ``cfg.seed + RANK_STRIDE * rank + offset``: envs for different
    purposes never replay the same episodes."""

    TRAIN = 0
    EVAL = 999
    VIDEO = 777
    PLAY = 4242
    #: Not an env: the generator of overlapped collection (agent.overlap).
    COLLECT = 31337


#: Seed distance between DDP ranks' envs.
RANK_STRIDE = 1000


def env_seed(seed: int, purpose: SeedOffset, rank: int = 0) -> int:
    return seed + RANK_STRIDE * rank + int(purpose)
