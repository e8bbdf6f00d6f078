"""Exploration: the actions the step loop takes, drawn from a generator of the collection's
own (random-phase actions, policy samples and the ``agent.action_noise`` process), so that
the learner's draws from torch's global generator never change which actions are taken."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchrl.data import TensorSpec

from vlmrm.config.schema import AgentConfig
from vlmrm.sac.agent import is_discrete


def actor_network(actor: nn.Module) -> nn.Module:
    """The plain network inside vlmrm's ``ProbabilisticActor``: observation -> (loc, scale)
    for continuous actions, -> logits for discrete ones."""
    return actor.module[0].module


class ExplorationSampler:
    """The exploring policy as plain tensors, on a snapshot of the actor's ``network``
    (:func:`actor_network`).

    Every random number comes from ``generator``: uniform actions in the random phase,
    the actor's sample (a tanh-squashed Gaussian, or a categorical), and ``agent.action_noise``
    (independent Gaussian, or an Ornstein-Uhlenbeck process per env that restarts with each
    episode). The formulas are those of TorchRL's ``TanhNormal`` / ``OneHotCategorical``,
    ``AdditiveGaussianModule`` and ``OrnsteinUhlenbeckProcessModule`` (dt = 1, noise clamped
    into the action box). Sequential collection passes torch's global generator, so its
    draws are those TorchRL's modules made before this sampler replaced them (without
    action noise checked bit for bit; with it, the same formulas in another draw order).
    """

    def __init__(self, network: nn.Module, action_spec: TensorSpec, cfg: AgentConfig,
                 generator: torch.Generator) -> None:
        self.network = copy.deepcopy(network).cpu().requires_grad_(False)
        self.generator = generator
        self.discrete = is_discrete(action_spec)
        self.noise_kind = cfg.action_noise
        self.sigma, self.theta = cfg.action_noise_sigma, cfg.action_noise_theta
        if self.discrete:
            self.num_actions = action_spec.shape[-1]
            self.action_dtype = action_spec.dtype
        else:
            self.low = action_spec.space.low.detach().cpu().float()
            self.high = action_spec.space.high.detach().cpu().float()
        #: The Ornstein-Uhlenbeck state, ``[*env batch, act_dim]`` (None before the first step).
        self.ou_noise: Tensor | None = None

    def sync(self, actor: nn.Module) -> None:
        """Copy the actor's current weights into the snapshot (call only while no collection
        is in flight)."""
        self.set_weights(list(actor_network(actor).parameters()))

    @torch.no_grad()
    def set_weights(self, weights: list[Tensor]) -> None:
        """The snapshot's parameters, in ``network.parameters()`` order, from ``weights``."""
        torch._foreach_copy_(list(self.network.parameters()), weights)

    @torch.no_grad()
    def __call__(self, observation: Tensor, random: bool, starts: Tensor) -> Tensor:
        """Actions for ``observation`` ``[..., obs_dim]``; ``starts`` (bool, the env batch
        shape) marks envs at the first step of an episode (it restarts the OU noise)."""
        batch = observation.shape[:-1]
        if random:
            return self._uniform(batch)
        if self.discrete:
            return self._categorical(self.network(observation.float()))
        loc, scale = self.network(observation.float())
        pre = loc + scale * self._normal(loc.shape)
        lim = 1.0 - torch.finfo(pre.dtype).resolution  # TorchRL's safe tanh
        action = self._box(pre.tanh().clamp(-lim, lim))
        return self._add_noise(action, starts) if self.noise_kind else action

    def _normal(self, shape: torch.Size) -> Tensor:
        return torch.randn(shape, generator=self.generator)

    def _box(self, unit: Tensor) -> Tensor:
        """(-1, 1) -> the action box, as TorchRL's TanhNormal with low/high."""
        return (self.high + self.low) / 2 + (self.high - self.low) / 2 * unit

    def _uniform(self, batch: torch.Size) -> Tensor:
        if self.discrete:
            index = torch.randint(self.num_actions, batch, generator=self.generator)
            return F.one_hot(index, self.num_actions).to(self.action_dtype)
        u = torch.rand((*batch, *self.low.shape), generator=self.generator)
        return self.low + (self.high - self.low) * u

    def _categorical(self, logits: Tensor) -> Tensor:
        probs = logits.softmax(-1).reshape(-1, self.num_actions)
        index = torch.multinomial(probs, 1, generator=self.generator).reshape(logits.shape[:-1])
        return F.one_hot(index, self.num_actions).to(self.action_dtype)

    def _add_noise(self, action: Tensor, starts: Tensor) -> Tensor:
        if self.noise_kind == "normal":
            noise = self.sigma * self._normal(action.shape)
        else:  # "ou", dt = 1: noise += -theta * noise + sigma * N(0, 1)
            if self.ou_noise is None:
                self.ou_noise = torch.zeros_like(action)
            prev = self.ou_noise.masked_fill(starts.unsqueeze(-1), 0.0)
            self.ou_noise = prev - self.theta * prev + self.sigma * self._normal(action.shape)
            noise = self.ou_noise
        return torch.maximum(torch.minimum(action + noise, self.high), self.low)

    def state(self) -> dict[str, Any]:
        """What a checkpoint needs to continue the same random stream and noise."""
        return {"generator": self.generator.get_state(),
                "ou_noise": None if self.ou_noise is None else self.ou_noise.clone()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        noise = state["ou_noise"]
        self.ou_noise = None if noise is None else noise.clone()
