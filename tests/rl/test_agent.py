"""Actor/critic factories and the exploration policy (action noise)."""

from __future__ import annotations

import pytest
import torch
from tensordict.nn import TensorDictModule
from torchrl.envs import GymEnv, InitTracker, TransformedEnv

from vlmrm.config import AgentConfig
from vlmrm.errors import ConfigError
from vlmrm.rl.agent import exploration_policy, make_agent


def zero_actor() -> TensorDictModule:
    """An actor whose action is 0: what the exploration policy returns is the noise alone."""
    return TensorDictModule(lambda obs: torch.zeros(*obs.shape[:-1], 1), in_keys=["observation"],
                            out_keys=["action"])


def noise_rollout(kind: str, steps: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    env = TransformedEnv(GymEnv("MountainCarContinuous-v0", max_episode_steps=20),
                         InitTracker())
    env.set_seed(0)
    cfg = AgentConfig(action_noise=kind, action_noise_sigma=0.3, action_noise_theta=0.1)
    torch.manual_seed(0)
    td = env.rollout(steps, exploration_policy(zero_actor(), env.action_spec, cfg),
                     break_when_any_done=False)
    env.close()
    return td["action"].reshape(-1), td["is_init"].reshape(-1)


def lag1(x: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([x[:-1], x[1:]]))[0, 1])


def test_ou_noise_is_correlated_in_time_and_restarts_with_each_episode():
    noise, first = noise_rollout("ou")
    assert lag1(noise) > 0.8  # a push lasts ~1/theta = 10 steps
    assert noise.abs().max() <= 1.0  # kept inside the action bounds
    # 20-step episodes: the process restarts at each episode's first step, so the noise there
    # is unrelated to the previous step's, unlike anywhere else.
    starts = first.nonzero().reshape(-1)
    assert starts.tolist() == list(range(0, 600, 20))
    across = torch.corrcoef(torch.stack([noise[starts[1:] - 1], noise[starts[1:]]]))[0, 1]
    assert abs(float(across)) < 0.4


def test_normal_noise_is_independent_per_step():
    noise, _ = noise_rollout("normal")
    assert abs(lag1(noise)) < 0.15 and 0.2 < float(noise.std()) < 0.4


def test_no_noise_returns_the_actor_itself_and_discrete_actions_refuse_noise():
    from torchrl.data import OneHot

    actor, _ = make_agent(3, OneHot(2), [8])
    assert exploration_policy(actor, OneHot(2), AgentConfig()) is actor
    with pytest.raises(ConfigError, match="agent.action_noise='ou' needs continuous actions"):
        exploration_policy(actor, OneHot(2), AgentConfig(action_noise="ou"))
