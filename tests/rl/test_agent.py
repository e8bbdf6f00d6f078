"""Actor/critic factories and exploration noise (as the collection adds it)."""

from __future__ import annotations

import pytest
import torch
from torchrl.data import Bounded

from vlmrm.config import AgentConfig
from vlmrm.errors import ConfigError
from vlmrm.sac.agent import check_action_noise, make_agent
from vlmrm.sac.exploration import ExplorationSampler, actor_network


def noise_rollout(kind: str, steps: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    """The collection's noise on a zero action over 20-step episodes of a 1-D action box
    [-1, 1]: what the exploration sampler adds, and where episodes start."""
    cfg = AgentConfig(action_noise=kind, action_noise_sigma=0.3, action_noise_theta=0.1)
    actor, _ = make_agent(2, Bounded(-1.0, 1.0, (1,)), [8])
    sampler = ExplorationSampler(actor_network(actor), Bounded(-1.0, 1.0, (1,)), cfg,
                                 torch.Generator().manual_seed(0))
    first = torch.arange(steps) % 20 == 0
    noise = torch.stack([sampler._add_noise(torch.zeros(1), first[t].reshape(()))
                         for t in range(steps)])
    return noise.reshape(-1), first


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


def test_discrete_actions_refuse_noise():
    from torchrl.data import OneHot

    check_action_noise(AgentConfig(), OneHot(2))  # no noise: fine
    with pytest.raises(ConfigError, match="agent.action_noise='ou' needs continuous actions"):
        check_action_noise(AgentConfig(action_noise="ou"), OneHot(2))
