"""The step loop in a process of its own (agent.collector=process) collects exactly what the
in-process StepLoop collects, shares its checkpoint state, and reports its failures."""

from __future__ import annotations

import functools
import os
import signal
from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDictBase
from torchrl.data import OneHot

from tests.helpers import CONFIGS
from vlmrm.collect.loop import StepLoop
from vlmrm.collect.process import CollectorDied, ProcessStepLoop
from vlmrm.config import load_config
from vlmrm.envs.factory import make_env
from vlmrm.errors import ConfigError
from vlmrm.keys import NEXT, PIXELS
from vlmrm.run.build import make_reward_model, make_step_loop
from vlmrm.sac.agent import make_agent
from vlmrm.sac.exploration import ExplorationSampler, actor_network

#: Two serial CartPole envs rendering for the demo model.
OVERRIDES = ["env.num_envs=2"]


@pytest.fixture(scope="module")
def setup():
    cfg = load_config(CONFIGS / "quickstart.yaml", OVERRIDES)
    size = make_reward_model(cfg).image_size
    probe = make_env(cfg.env, size, True, 0)
    actor, _ = make_agent(4, probe.action_spec_unbatched, [8])
    probe.close()
    return cfg, functools.partial(make_env, cfg.env, size, True, 11), actor


def thread_loop(cfg, build_env, actor, seed: int, resize=None) -> StepLoop:
    env = build_env()
    return StepLoop(env, ExplorationSampler(actor_network(actor), env.action_spec_unbatched,
                                            cfg.agent, torch.Generator().manual_seed(seed)),
                    resize)


def assert_same(a: TensorDictBase, b: TensorDictBase) -> None:
    assert a.batch_size == b.batch_size
    assert set(a.keys(True, True)) == set(b.keys(True, True))
    for key in a.keys(True, True):
        assert torch.equal(a[key], b[key]), f"{key} differs"


def perturb(actor) -> None:
    with torch.no_grad():
        for p in actor_network(actor).parameters():
            p.add_(0.5 * torch.randn_like(p))


def test_rollouts_match_the_in_process_loop(setup):
    cfg, build_env, actor = setup
    resize = make_reward_model(cfg).backend.preprocessor.resize_frames  # crosses pickled
    here = thread_loop(cfg, build_env, actor, seed=5, resize=resize)
    there = ProcessStepLoop(build_env, actor_network(actor), cfg.agent, seed=5,
                            resize_frames=resize)
    try:
        assert there.num_envs == here.num_envs == 2
        first = there.rollout(3, random=True)
        assert first[NEXT, PIXELS].shape == (2, 3, 64, 64, 3)  # the demo model's input size
        assert_same(here.rollout(3, random=True), first)
        perturb(actor)  # the next rollouts must use the new weights on both sides
        here.sync(actor)
        there.sync(actor)
        streamed: list[torch.Tensor] = []
        ours, theirs = here.rollout(4, random=False), there.rollout(4, False, streamed.append)
        assert_same(ours, theirs)
        assert theirs[NEXT, PIXELS].shape[:2] == (2, 4)  # [envs, steps, H, W, 3]
        assert len(streamed) == 4
        assert torch.equal(torch.stack(streamed, dim=1), ours[NEXT, PIXELS])
        assert ours["action"].float().std() > 0  # the policy acted, not a constant
    finally:
        here.env.close()
        there.close()


def test_checkpoint_state_moves_between_the_two_loops(setup):
    """State taken from the process continues in a StepLoop built from another seed, and
    the other way round, with the same next rollout as the loop it came from."""
    cfg, build_env, actor = setup
    there = ProcessStepLoop(build_env, actor_network(actor), cfg.agent, seed=1)
    here = thread_loop(cfg, build_env, actor, seed=2)
    try:
        there.rollout(5, random=False)
        here.load_state(there.state())
        assert_same(here.rollout(6, random=False), there.rollout(6, random=False))
        here.rollout(2, random=True)
        there.load_state(here.state())
        assert_same(here.rollout(3, random=False), there.rollout(3, random=False))
    finally:
        here.env.close()
        there.close()


def test_errors_come_back_with_their_type_and_the_child_keeps_serving(setup):
    cfg, build_env, actor = setup
    there = ProcessStepLoop(build_env, actor_network(actor), cfg.agent, seed=0)
    try:
        state = there.state()
        with pytest.raises(KeyError, match="sampler"):
            there.load_state({k: v for k, v in state.items() if k != "sampler"})
        assert there.rollout(2, random=True).batch_size == (2, 2)
        # A sync is not answered: its failure comes back with the next request's answer,
        # and the answers stay paired with their requests afterwards.
        wrong, _ = make_agent(4, OneHot(2), [16])
        there.sync(wrong)
        with pytest.raises(RuntimeError, match="size"):
            there.rollout(2, random=True)
        assert there.state()["starts"].shape == (2,)
        there.sync(actor)
        assert there.rollout(3, random=True).batch_size == (2, 3)
    finally:
        there.close()
    assert there._process.exitcode == 0  # closed on request, not killed


def test_a_collector_that_died_is_reported(setup):
    cfg, build_env, actor = setup
    there = ProcessStepLoop(build_env, actor_network(actor), cfg.agent, seed=0)
    os.kill(there._process.pid, signal.SIGKILL)
    there._process.join()
    with pytest.raises(CollectorDied, match=r"exit code -9.*agent.collector=thread"):
        there.rollout(2, random=True)
    there.close()  # nothing left to stop: no error


def test_frames_leave_the_loop_resized_and_score_as_full_size_frames(setup):
    """CartPole renders 600x600 whatever the model wants: the loop hands on model-size
    frames, and the reward model scores them exactly as it scores the full-size ones."""
    cfg, build_env, actor = setup
    model = make_reward_model(cfg)
    resize = model.backend.preprocessor.resize_frames
    full, small = thread_loop(cfg, build_env, actor, 3), thread_loop(cfg, build_env, actor, 3,
                                                                      resize)
    try:
        big, shrunk = full.rollout(4, random=True), small.rollout(4, random=True)
    finally:
        full.env.close()
        small.env.close()
    assert big[NEXT, PIXELS].shape == (2, 4, 600, 600, 3)
    assert torch.equal(shrunk[NEXT, PIXELS], resize(big[NEXT, PIXELS]))
    assert_same(big.exclude((NEXT, PIXELS)), shrunk.exclude((NEXT, PIXELS)))
    assert torch.equal(model(shrunk[NEXT, PIXELS].reshape(-1, 64, 64, 3)),
                       model(big[NEXT, PIXELS].reshape(-1, 600, 600, 3)))


def test_the_built_loop_resizes_for_the_reward_model():
    cfg = load_config(CONFIGS / "quickstart.yaml", ["agent.overlap=false"])
    model = make_reward_model(cfg)
    module = SimpleNamespace(actor=make_agent(4, OneHot(2), [8])[0])
    loop = make_step_loop(cfg, module, lambda: make_env(cfg.env, (64, 64), True, 0), 0, model)
    try:
        assert loop.rollout(2, random=True)[NEXT, PIXELS].shape == (2, 64, 64, 3)
    finally:
        loop.env.close()


def test_collector_is_checked_and_the_sequential_loop_stays_in_process(tmp_path):
    with pytest.raises(ConfigError, match=r"agent.collector='fork' is not one of \['thread'"):
        load_config(CONFIGS / "quickstart.yaml", ["agent.collector=fork"])
    cfg = load_config(CONFIGS / "quickstart.yaml", ["agent.overlap=false"])
    assert cfg.agent.collector == "process"  # the default, which the sequential loop ignores
    module = SimpleNamespace(actor=make_agent(4, OneHot(2), [8])[0])
    loop = make_step_loop(cfg, module, lambda: make_env(cfg.env, (64, 64), True, 0), rank=0)
    assert isinstance(loop, StepLoop)
    loop.env.close()
