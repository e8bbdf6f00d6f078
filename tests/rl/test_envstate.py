"""Env state capture: a fresh env loaded with a captured state continues bit-identically."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDictBase
from torchrl.envs import DoubleToFloat, EnvBase, GymWrapper, SerialEnv, TransformedEnv

from vlmrm.config.schema import EnvConfig
from vlmrm.envs.envstate import env_state, load_env_state
from vlmrm.envs.factory import make_env

EPISODE = 20
BEFORE = 27  # steps before the capture: inside the second episode
AFTER = 30  # steps compared: across the end of that episode and into the next


def fixed_actions(env: EnvBase, n: int) -> list[torch.Tensor]:
    """The same random-looking action sequence every time."""
    torch.manual_seed(1234)
    return [env.action_spec.rand() for _ in range(n)]


def play(env: EnvBase, td: TensorDictBase, actions: list[torch.Tensor]
         ) -> tuple[list[TensorDictBase], TensorDictBase]:
    """Step with ``actions`` (resetting finished episodes); the ``next`` of each step."""
    seen = []
    for action in actions:
        td["action"] = action
        step, td = env.step_and_maybe_reset(td)
        seen.append(step["next"].clone())
    return seen, td


def through_disk(state: dict) -> dict:
    """``state`` after torch.save and a weights-only (pickle-free) torch.load."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same_state(want, have, where: str = "state") -> None:
    if isinstance(want, dict):
        assert want.keys() == have.keys(), where
        for key in want:
            assert_same_state(want[key], have[key], f"{where}[{key!r}]")
    elif isinstance(want, list):
        assert len(want) == len(have), where
        for i, (a, b) in enumerate(zip(want, have, strict=True)):
            assert_same_state(a, b, f"{where}[{i}]")
    elif isinstance(want, torch.Tensor):
        assert torch.equal(want, have), where
    else:
        assert want == have, where


def resume_and_compare(cfg: EnvConfig, prepare: Callable[[EnvBase], None] | None = None,
                       fresh_cfg: EnvConfig | None = None) -> list[TensorDictBase]:
    """Run an env, capture it, and check that a fresh env (``fresh_cfg``, other seed)
    loaded with the capture continues identically and ends in the same state."""
    original = make_env(cfg, 64, from_pixels=True, seed=1)
    fresh = make_env(fresh_cfg or cfg, 64, from_pixels=True, seed=2)
    try:
        actions = fixed_actions(original, BEFORE + AFTER)
        _, td = play(original, original.reset(), actions[:BEFORE])
        if prepare is not None:
            prepare(original)
        state = through_disk(env_state(original))
        expected, _ = play(original, td, actions[BEFORE:])
        fresh_td = fresh.reset()  # as a training loop would have
        load_env_state(fresh, state)
        got, _ = play(fresh, fresh_td, actions[BEFORE:])
        assert_same_state(env_state(original), env_state(fresh))
    finally:
        original.close()
        fresh.close()
    assert any(bool(step["done"].any()) for step in expected), "no episode end compared"
    for t, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert set(want.keys(True, True)) == set(have.keys(True, True))
        for key in want.keys(True, True):
            assert torch.equal(want[key], have[key]), f"step {t}: {key} differs"
    return expected


@pytest.mark.parametrize("env_id", ["vlmrm/CartPole-v0", "Pendulum-v1", "vlmrm/Humanoid-v0"])
def test_single_env_resumes_exactly(env_id: str):
    expected = resume_and_compare(EnvConfig(id=env_id, episode_length=EPISODE))
    assert expected[0]["pixels"].dtype == torch.uint8


def test_mountaincar_sticky_success_is_restored():
    def reach_flag(env: EnvBase) -> None:
        # The car at the flag: the next step sets the sticky success flag.
        env.base_env._env.unwrapped.state = np.array([0.5, 0.0], dtype=np.float32)

    cfg = EnvConfig(id="vlmrm/MountainCarContinuous-v0", episode_length=EPISODE)
    expected = resume_and_compare(cfg, reach_flag)
    success = [bool(step["is_success"]) for step in expected]
    end = [bool(step["done"]) for step in expected].index(True)
    assert all(success[:end + 1]) and not all(success[end + 1:])


def test_serial_env_resumes_exactly():
    resume_and_compare(EnvConfig(id="vlmrm/CartPole-v0", episode_length=EPISODE, num_envs=2))


def test_parallel_env_resumes_exactly():
    # Worker processes take seconds to start and stop, so only the resumed env runs in them:
    # a SerialEnv of the same config runs the same episodes and has the same state layout.
    cfg = EnvConfig(id="vlmrm/CartPole-v0", episode_length=EPISODE, num_envs=2)
    parallel = EnvConfig(id="vlmrm/CartPole-v0", episode_length=EPISODE, num_envs=2,
                         parallel=True)
    resume_and_compare(cfg, fresh_cfg=parallel)


def test_state_holds_only_plain_values():
    env = make_env(EnvConfig(id="vlmrm/Humanoid-v0", episode_length=EPISODE), 64,
                   from_pixels=False, seed=0)
    try:
        env.reset()
        state = env_state(env)
    finally:
        env.close()

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (torch.Tensor, bool, int, float, str))

    assert plain(state)
    assert state["envs"][0]["physics"]["arrays"]["qpos"].shape == (24,)


def test_unknown_env_is_refused():
    env = gym_env("Acrobot-v1")
    try:
        env.reset()
        with pytest.raises(ValueError, match="Acrobot-v1.*AcrobotEnv"):
            env_state(env)
    finally:
        env.close()


def test_batched_env_of_other_envs_is_refused():
    env = SerialEnv(2, functools.partial(gym_env, "Pendulum-v1"))
    with pytest.raises(ValueError, match="build it with vlmrm.envs.factory.make_env"):
        env_state(env)
    assert env.is_closed  # refused before any worker env was made


def gym_env(env_id: str) -> EnvBase:
    return TransformedEnv(GymWrapper(gym.make(env_id, render_mode="rgb_array")),
                          DoubleToFloat())


def test_state_of_another_env_is_refused():
    cartpole = make_env(EnvConfig(id="vlmrm/CartPole-v0"), None, from_pixels=False, seed=0)
    pendulum = make_env(EnvConfig(id="Pendulum-v1"), None, from_pixels=False, seed=0)
    try:
        cartpole.reset()
        pendulum.reset()
        with pytest.raises(ValueError, match="does not fit env 'Pendulum-v1'"):
            load_env_state(pendulum, env_state(cartpole))
    finally:
        cartpole.close()
        pendulum.close()


def _loop(env_id: str, num_envs: int, seed: int):
    from vlmrm.collect.loop import StepLoop
    from vlmrm.config.schema import AgentConfig
    from vlmrm.sac.agent import make_agent
    from vlmrm.sac.exploration import ExplorationSampler

    env = make_env(EnvConfig(id=env_id, num_envs=num_envs), None, from_pixels=False, seed=seed)
    actor, _ = make_agent(env.observation_spec["observation"].shape[-1],
                          env.action_spec_unbatched, [8], "tanh")
    sampler = ExplorationSampler(actor.module[0].module, env.action_spec_unbatched,
                                 AgentConfig(), torch.Generator().manual_seed(0))
    return StepLoop(env, sampler)


def test_uncapturable_envs_are_marked_and_restart_from_a_seed_of_the_resume_step():
    """Acrobot's state cannot be captured: its env's capture says so (nothing is asked of
    the env), and a load reseeds and resets every env, the same way for the same resume
    step and another way for another step; the exploration state still continues."""
    from vlmrm.envs.envstate import capture_blocker, restart_seed

    single = make_env(EnvConfig(id="Acrobot-v1"), None, from_pixels=False, seed=0)
    assert capture_blocker(single).endswith("AcrobotEnv")
    single.close()
    old = _loop("Acrobot-v1", 2, seed=0)
    old.rollout(5, random=True)
    state = through_disk(old.state(exact=False))
    assert state["env"]["envs"] is None
    roots = []
    for steps in (10, 10, 12):
        new = _loop("Acrobot-v1", 2, seed=0)
        new.load_state(state, restart_seed(0, steps))
        assert new.starts.all()  # every env begins an episode (OU noise restarts too)
        assert torch.equal(new.sampler.generator.get_state(), old.sampler.generator.get_state())
        roots.append(new.root["observation"])
        new.env.close()
    assert torch.equal(roots[0], roots[1]) and not torch.equal(roots[0], roots[2])
    assert not torch.equal(roots[0], old.root["observation"])
    old.env.close()
    with pytest.raises(ValueError, match="restart"):
        load_env_state(old.env, state["env"])  # no seed given: refused, never silently kept
