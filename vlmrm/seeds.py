"""Where every generator's seed comes from: the run seed, the rank, and a named purpose.

A leaf module: the env factory, the learner (:mod:`vlmrm.sac.update`) and the run state all
derive seeds here, so two purposes never draw the same stream by accident.
"""

from __future__ import annotations

from enum import Enum


class SeedPurpose(Enum):
    """What an env (or generator) is for. Its seed is ``cfg.seed + RANK_STRIDE * rank +
    purpose.offset``: envs for different purposes never replay the same episodes, with two
    deliberate exceptions (the seeds these commands always used): ``RENDER`` previews the
    episodes training's first env starts from, and ``DATASET`` records the episodes
    ``vlmrm play`` shows, so a dataset from a checkpoint labels what play renders."""

    TRAIN = "train"
    EVAL = "eval"
    VIDEO = "video"
    PLAY = "play"
    RENDER = "render"
    DATASET = "dataset"
    #: Not an env: the generator of overlapped collection (agent.overlap).
    COLLECT = "collect"

    @property
    def offset(self) -> int:
        return OFFSETS[self]


#: The numbers checkpoints and recorded references depend on: changing TRAIN, EVAL, VIDEO,
#: PLAY or COLLECT changes what every run draws, and a resumed run would no longer continue
#: its own episodes.
OFFSETS = {SeedPurpose.TRAIN: 0, SeedPurpose.EVAL: 999, SeedPurpose.VIDEO: 777,
           SeedPurpose.PLAY: 4242, SeedPurpose.RENDER: 0, SeedPurpose.DATASET: 4242,
           SeedPurpose.COLLECT: 31337}

#: Seed distance between DDP ranks' envs.
RANK_STRIDE = 1000


def env_seed(seed: int, purpose: SeedPurpose, rank: int = 0) -> int:
    return seed + RANK_STRIDE * rank + purpose.offset
