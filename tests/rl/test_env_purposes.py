"""One env factory (`vlmrm.envs.factory.env_for`): each env's seed comes from its purpose."""

from __future__ import annotations

import itertools

import pytest
import torch

from vlmrm.config import Config
from vlmrm.envs.factory import SeedPurpose, env_for, env_seed, make_base_env

ONE_ENV = [p for p in SeedPurpose if p is not SeedPurpose.COLLECT]


def cartpole(num_envs: int = 1) -> Config:
    cfg = Config()
    cfg.seed, cfg.env.id, cfg.env.num_envs = 7, "CartPole-v1", num_envs
    return cfg


def first_observation(env) -> torch.Tensor:
    try:
        return env.reset()["observation"]
    finally:
        env.close()


def test_offsets_that_runs_depend_on_are_unchanged():
    # Recorded references, checkpoints and resumed runs replay envs seeded with these.
    assert {p.name: p.offset for p in SeedPurpose if p.name in
            ("TRAIN", "EVAL", "VIDEO", "PLAY", "COLLECT")} == {
        "TRAIN": 0, "EVAL": 999, "VIDEO": 777, "PLAY": 4242, "COLLECT": 31337}


def test_purposes_draw_apart_on_every_rank_but_the_two_that_share_on_purpose():
    seeds = {}
    for purpose, rank in itertools.product(SeedPurpose, range(8)):
        if purpose not in (SeedPurpose.RENDER, SeedPurpose.DATASET):
            seeds.setdefault(env_seed(0, purpose, rank), []).append((purpose, rank))
    assert [v for v in seeds.values() if len(v) > 1] == []
    # render previews training's first env; a dataset labels the episodes play shows.
    assert env_seed(5, SeedPurpose.RENDER) == env_seed(5, SeedPurpose.TRAIN)
    assert env_seed(5, SeedPurpose.DATASET) == env_seed(5, SeedPurpose.PLAY)


@pytest.mark.parametrize("purpose", ONE_ENV, ids=lambda p: p.value)
def test_one_env_per_purpose_seeded_from_the_purpose(purpose):
    cfg = cartpole(num_envs=3)  # training's count: the other purposes still get one env
    env = env_for(cfg, purpose, rank=1, from_pixels=False)
    assert env.batch_size == torch.Size([])
    expected = make_base_env(cfg.env, None, False, seed=7 + 1000 + purpose.offset)
    assert torch.equal(first_observation(env), first_observation(expected))


def test_training_envs_are_the_ranks_share_and_differ_from_evaluation():
    cfg = cartpole(num_envs=4)
    train = first_observation(env_for(cfg, SeedPurpose.TRAIN, 1, from_pixels=False,
                                      num_envs=2))
    assert train.shape == (2, 4)
    assert not torch.equal(train[1], train[0])  # each env of the batch its own episode
    evaluation = first_observation(env_for(cfg, SeedPurpose.EVAL, 1, from_pixels=False))
    assert not torch.equal(evaluation, train[0])
    render = first_observation(env_for(cfg, SeedPurpose.RENDER, 1, from_pixels=False))
    assert torch.equal(render, train[0])  # render shows where training's first env starts

