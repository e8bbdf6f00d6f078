"""SAC's losses in plain torch, on the tensors of TorchRL's ``SACLoss`` / ``DiscreteSACLoss``.

They compute what TorchRL's ``forward`` computes (TD(0) targets masked by ``terminated``,
twin critics, tanh-squashed Gaussian or categorical actor, fixed or learned entropy
coefficient, l2 or smooth-L1 critic loss) without TensorDict plumbing, vmap or functional
parameter swaps, which cost more than the arithmetic at SAC's sizes on a CPU.
``tests/rl/test_update.py`` holds them to TorchRL's values and gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from torch import Tensor, nn
from torchrl.objectives import DiscreteSACLoss, LossModule, SACLoss

from vlmrm.compiled import CompiledOrEager
from vlmrm.keys import ACTION, NEXT, OBSERVATION, REWARD, TERMINATED

#: The loss outputs every implementation returns, in this order.
OUTPUTS = ("loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy")
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


# -- minibatches --------------------------------------------------------------------------
class Minibatch(NamedTuple):
    """Replay transitions as plain tensors, ``[k, B, ...]`` for k updates or ``[B, ...]``.

    ``action`` is float (one-hot for discrete actions); ``reward`` and ``terminated`` have
    no trailing singleton dimension and ``terminated`` is 0./1. (float, so the loss needs no
    bool tensor: Inductor's CPU code for bool tensors is slow, see :func:`compile_losses`).
    """

    observation: Tensor
    action: Tensor
    next_observation: Tensor
    reward: Tensor
    terminated: Tensor

    def at(self, i: int) -> Minibatch:
        """The i-th of k stacked minibatches."""
        return Minibatch(*(t[i] for t in self))

    @classmethod
    def from_tensordict(cls, td: TensorDictBase) -> Minibatch:
        """From replay transitions ``[..., B]`` (vlmrm's keys), actions and flags in the
        observations' float dtype."""
        obs = td.get(OBSERVATION)
        return cls(obs, td.get(ACTION).to(obs.dtype), td.get((NEXT, OBSERVATION)),
                   td.get((NEXT, REWARD)).squeeze(-1),
                   td.get((NEXT, TERMINATED)).squeeze(-1).to(obs.dtype))


# -- the losses in plain torch ------------------------------------------------------------
class _ReLUKeepsOutput(torch.autograd.Function):
    """ReLU whose backward multiplies by ``sign(output)``: float only, so the compiled
    backward stores no bool mask (Inductor's bool stores are ~20x slower than eager on CPU)."""

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return grad * out.sign()


class _SafeTanh(torch.autograd.Function):
    """tanh kept strictly inside (-1, 1) (TorchRL's ``SafeTanhTransform``): the clamp is
    invisible to the gradient, which is ``1 - y**2`` of the clamped output, as TorchRL's."""

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        lim = 1.0 - torch.finfo(x.dtype).resolution
        return x.tanh().clamp(-lim, lim)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return grad * (1 - out.pow(2))


def _relu_keeps_output(x: Tensor) -> Tensor:
    return _ReLUKeepsOutput.apply(x)


def _identity(x: Tensor) -> Tensor:
    return x


#: Hidden activation modules of vlmrm's MLPs -> functions (agent.ACTIVATIONS).
_ACTIVATIONS: dict[type[nn.Module], Callable[[Tensor], Tensor]] = {
    nn.ReLU: F.relu, nn.Tanh: torch.tanh, nn.ELU: F.elu, nn.GELU: F.gelu, nn.SiLU: F.silu}


@dataclass(frozen=True)
class LossSpec:
    """Everything of a TorchRL SAC loss that is a constant of the computation."""

    discrete: bool
    gamma: float
    target_entropy: float
    critic_loss: str                        # "l2" or "smooth_l1"
    activation: Callable[[Tensor], Tensor]
    #: min over the twin critics as torch.minimum (a float-only backward) instead of min(0)
    bool_free: bool = False
    #: critic layer 1 as W_obs @ s + W_act @ a: the s half once for Q(s, a) and Q(s, a_pi)
    share_obs: bool = False
    obs_dim: int = 0
    #: continuous actor head: scale = max(softplus(x + bias) + min, lb) (NormalParamExtractor)
    scale_bias: float = 0.0
    scale_min: float = 0.0
    scale_lb: float = 0.0
    #: actions rescaled from (-1, 1) to the action box (TorchRL skips it for the (-1, 1) box)
    affine: bool = False


class Params(NamedTuple):
    """The loss's tensors, each network's as ``[W0, b0, W1, b1, ...]`` (critics stacked
    ``[2, ...]``), plus the action box's affine map ``(loc, scale, log|scale|)``."""

    actor: list[Tensor]
    critic: list[Tensor]
    target: list[Tensor]
    log_alpha: Tensor
    box: tuple[Tensor, Tensor, Tensor] | None


def _mlp(w: Sequence[Tensor], x: Tensor, act: Callable[[Tensor], Tensor]) -> Tensor:
    for i in range(0, len(w), 2):
        x = F.linear(x, w[i], w[i + 1])
        if i + 2 < len(w):
            x = act(x)
    return x


def _twin_rest(w: Sequence[Tensor], h: Tensor, act: Callable[[Tensor], Tensor]) -> Tensor:
    """Stacked critics from layer 1's pre-activation ``[2, B, H]`` to ``[2, B, out]``."""
    for i in range(2, len(w), 2):
        h = torch.baddbmm(w[i + 1].unsqueeze(1), act(h), w[i].transpose(1, 2))
    return h


def _twin(w: Sequence[Tensor], x: Tensor, act: Callable[[Tensor], Tensor]) -> Tensor:
    """Both critics on one input ``[B, in]`` -> ``[2, B, out]``: one batched GEMM per layer."""
    h = torch.baddbmm(w[1].unsqueeze(1), x.expand(w[0].shape[0], *x.shape), w[0].transpose(1, 2))
    return _twin_rest(w, h, act)


def _twin_min(s: LossSpec, q: Tensor) -> Tensor:
    return torch.minimum(q[0], q[1]) if s.bool_free else q.min(0)[0]


def _critic_loss(s: LossSpec, pred: Tensor, target: Tensor) -> Tensor:
    """Summed over the critics, averaged over the batch (TorchRL's distance_loss)."""
    fn = F.mse_loss if s.critic_loss == "l2" else F.smooth_l1_loss
    return fn(pred, target.expand_as(pred), reduction="none").sum(0).mean()


def _td0(s: LossSpec, mb: Minibatch, next_value: Tensor) -> Tensor:
    return mb.reward + s.gamma * (1 - mb.terminated) * next_value


def _alpha_terms(s: LossSpec, log_alpha: Tensor, log_prob: Tensor) -> dict[str, Tensor]:
    """loss_alpha, alpha and entropy from the actor's (detached) log-probabilities."""
    return {"loss_alpha": (-log_alpha * (log_prob + s.target_entropy)).mean(),
            "alpha": log_alpha.detach().exp(), "entropy": -log_prob.mean()}


def _tanh_normal(s: LossSpec, p: Params, obs: Tensor) -> tuple[Tensor, Tensor]:
    """A reparameterised action of TorchRL's TanhNormal actor and its log-probability,
    with TorchRL's formulas and order of operations (and its draw from the global RNG)."""
    loc, raw = _mlp(p.actor, obs, s.activation).chunk(2, -1)
    scale = (F.softplus(raw + s.scale_bias) + s.scale_min).clamp_min(s.scale_lb)
    pre = loc + torch.randn_like(loc) * scale
    log_prob = (-((pre - loc) ** 2) / (2 * scale ** 2) - scale.log() - _LOG_SQRT_2PI).sum(-1)
    ldj = 2.0 * (math.log(2.0) - pre - F.softplus(-2.0 * pre))
    action = _SafeTanh.apply(pre)
    if p.box is not None:
        action = p.box[0] + p.box[1] * action
        ldj = ldj + p.box[2]
    return action, log_prob - ldj.sum(-1)


def _critics(s: LossSpec, p: Params, mb: Minibatch, action: Tensor) -> tuple[Tensor, Tensor]:
    """``[2, B]`` Q(s, a) of the replayed actions, and Q(s, a_pi) of the actor's ``action``
    with detached critic weights (as TorchRL: the actor loss trains the actor only)."""
    detached = [w.detach() for w in p.critic]
    obs = mb.observation
    if not s.share_obs:
        return (_twin(p.critic, torch.cat([obs, mb.action], -1), s.activation).squeeze(-1),
                _twin(detached, torch.cat([obs, action], -1), s.activation).squeeze(-1))
    twins = p.critic[0].shape[0]
    w_obs, w_act = p.critic[0][..., :s.obs_dim], p.critic[0][..., s.obs_dim:]
    h_obs = torch.baddbmm(p.critic[1].unsqueeze(1), obs.expand(twins, *obs.shape),
                          w_obs.transpose(1, 2))
    pred = torch.baddbmm(h_obs, mb.action.expand(twins, *mb.action.shape), w_act.transpose(1, 2))
    # Detached weights for the actor: the observation half h_obs is the same, detached.
    h_pi = torch.baddbmm(h_obs.detach(), action.expand(twins, *action.shape),
                         w_act.detach().transpose(1, 2))
    return (_twin_rest(p.critic, pred, s.activation).squeeze(-1),
            _twin_rest(detached, h_pi, s.activation).squeeze(-1))


def continuous_losses(s: LossSpec, p: Params, mb: Minibatch) -> dict[str, Tensor]:
    """``SACLoss.forward`` (v2: no value network) on one minibatch ``[B, ...]``."""
    alpha = p.log_alpha.detach().exp()
    with torch.no_grad():  # TorchRL draws the next actions first, then the actor's
        next_action, next_log_prob = _tanh_normal(s, p, mb.next_observation)
        next_q = _twin(p.target, torch.cat([mb.next_observation, next_action], -1), s.activation)
        next_value = _twin_min(s, next_q - alpha * next_log_prob.unsqueeze(-1)).squeeze(-1)
        target = _td0(s, mb, next_value)
    action, log_prob = _tanh_normal(s, p, mb.observation)
    pred, q_pi = _critics(s, p, mb, action)
    return {"loss_actor": (alpha * log_prob - _twin_min(s, q_pi)).mean(),
            "loss_qvalue": _critic_loss(s, pred, target),
            **_alpha_terms(s, p.log_alpha, log_prob.detach())}


def _categorical(s: LossSpec, p: Params, obs: Tensor) -> tuple[Tensor, Tensor]:
    """(normalised log-probabilities, probabilities) of the one-hot categorical actor."""
    logits = _mlp(p.actor, obs, s.activation)
    log_prob = logits - logits.logsumexp(-1, keepdim=True)
    return log_prob, F.softmax(log_prob, -1)


def discrete_losses(s: LossSpec, p: Params, mb: Minibatch) -> dict[str, Tensor]:
    """``DiscreteSACLoss.forward`` on one minibatch ``[B, ...]``: exact expectations over the
    actions, no sampling."""
    alpha = p.log_alpha.detach().exp()
    with torch.no_grad():
        _, next_prob = _categorical(s, p, mb.next_observation)
        next_log_prob = torch.log(torch.where(next_prob == 0, 1e-8, next_prob))
        next_q = _twin_min(s, _twin(p.target, mb.next_observation, s.activation))
        next_value = (next_prob * (next_q - alpha * next_log_prob)).sum(-1)
        target = _td0(s, mb, next_value)
    q = _twin(p.critic, mb.observation, s.activation)                      # [2, B, n]
    log_prob, prob = _categorical(s, p, mb.observation)
    # TorchRL reruns the critics with detached weights on the same input for the actor:
    # the same values as q, without the second forward.
    actor_term = prob * (alpha * log_prob - _twin_min(s, q.detach()))
    return {"loss_actor": actor_term.sum(-1).mean(),
            "loss_qvalue": _critic_loss(s, (q * mb.action).sum(-1), target),
            **_alpha_terms(s, p.log_alpha, (log_prob * prob).sum(-1).detach())}


def _layers(params: TensorDictBase) -> list[Tensor]:
    """A TorchRL MLP's parameters as ``[W0, b0, W1, b1, ...]``."""
    items = list(params.items(True, True))
    if [k[-1] for k, _ in items] != ["weight", "bias"] * (len(items) // 2):
        raise ValueError(f"not an MLP of biased Linear layers: {[k for k, _ in items]}")
    return [v for _, v in items]


def _activation(mlp: nn.Module, bool_free: bool) -> Callable[[Tensor], Tensor]:
    kinds = {type(m) for m in mlp.modules()} & set(_ACTIVATIONS)
    if len(kinds) > 1:
        raise ValueError(f"one hidden activation expected, found {kinds}")
    if not kinds:
        return _identity  # hidden_sizes=[]: a linear layer
    kind = kinds.pop()
    return _relu_keeps_output if (bool_free and kind is nn.ReLU) else _ACTIVATIONS[kind]


def loss_spec(loss: LossModule, bool_free: bool = False, share_obs: bool | None = None
              ) -> LossSpec:
    """The constants of vlmrm's TorchRL SAC loss (built by ``agent.make_loss``).

    ``share_obs=None`` means True (continuous actions): +13 % updates/s at Humanoid sizes,
    within noise (+2 %) at Pendulum's (CPU-time medians)."""
    if loss.num_qvalue_nets != 2 or getattr(loss, "min_log_alpha", None) is not None or \
            getattr(loss, "max_log_alpha", None) is not None:
        raise ValueError("the fast loss implements twin critics without alpha bounds")
    discrete = isinstance(loss, DiscreteSACLoss)
    net = loss.actor_network.module[0].module
    common = {"discrete": discrete, "gamma": float(loss.value_estimator.gamma),
              "target_entropy": float(loss.target_entropy), "critic_loss": loss.loss_function,
              "activation": _activation(net, bool_free), "bool_free": bool_free}
    if discrete:
        return LossSpec(**common)
    _, extractor = net
    mapping = extractor.scale_mapping
    critic_in = _layers(loss.qvalue_network_params)[0].shape[-1]
    act_dim = _layers(loss.actor_network_params)[-2].shape[0] // 2  # loc and scale per dim
    obs_dim = critic_in - act_dim
    dist = loss.actor_network.module[-1].distribution_kwargs
    return LossSpec(**common, share_obs=share_obs is not False,
                    obs_dim=obs_dim, scale_bias=float(mapping.bias),
                    scale_min=float(mapping.min_val), scale_lb=float(extractor.scale_lb),
                    affine=bool((dist["high"] != 1).any() or (dist["low"] != -1).any()))


class FastSACLoss(nn.Module):
    """The plain-torch loss on a TorchRL SAC loss's own tensors; holds none of its own.

    ``forward(minibatch)`` returns the five :data:`OUTPUTS`, as the TorchRL loss does. Not
    meant to be registered in a module tree (it would add nothing to ``state_dict``, but
    the TorchRL loss it reads is already there).
    """

    def __init__(self, loss: SACLoss | DiscreteSACLoss, compile: bool = False,
                 share_obs: bool | None = None, bool_free: bool | None = None) -> None:
        """``bool_free`` (default: ``compile``) picks the ops the compiled loss needs."""
        super().__init__()
        self.__dict__["sac"] = loss  # not a submodule: its tensors stay where they are
        self.spec = loss_spec(loss, compile if bool_free is None else bool_free, share_obs)
        fn = discrete_losses if self.spec.discrete else continuous_losses
        self.losses: Callable[[Params, Minibatch], dict[str, Tensor]] = partial(fn, self.spec)
        if compile:
            self.losses = compile_losses(self.losses)
        self._box: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor, Tensor]] = {}
        # Listed once: TorchRL's parameter containers keep their tensor objects through
        # .to(device) and load_state_dict (new data, same objects).
        self._networks = (_layers(loss.actor_network_params), _layers(loss.qvalue_network_params),
                          _layers(loss.target_qvalue_network_params))

    def params(self, like: Tensor) -> Params:
        return Params(*self._networks, self.sac.log_alpha,
                      self._action_box(like) if self.spec.affine else None)

    def _action_box(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(loc, scale, log|scale|) of the action box, on ``like``'s device and dtype (the
        spec's tensors are not buffers: ``.to()`` never moves them)."""
        key = (like.device, like.dtype)
        if key not in self._box:
            dist = self.sac.actor_network.module[-1].distribution_kwargs
            low, high = (dist[k].to(like.device, like.dtype) for k in ("low", "high"))
            scale = (high - low) / 2
            self._box[key] = ((high + low) / 2, scale, scale.abs().log())
        return self._box[key]

    def forward(self, mb: Minibatch) -> dict[str, Tensor]:
        return self.losses(self.params(mb.observation), mb)


# -- torch.compile ------------------------------------------------------------------------
def compile_losses(fn: Callable, what: str = "agent.compile") -> CompiledOrEager:
    """``torch.compile`` of a loss forward only: backward, optimizer step and target update
    stay eager, so Lightning's ``manual_backward`` and DDP's gradient hooks are untouched.
    Build the loss with ``bool_free=True`` (see :class:`_ReLUKeepsOutput`). The batch size
    is fixed, so shapes are static. ``fallback_random``: the compiled code draws its random
    numbers as eager torch does, so a seed gives the same exploration noise compiled or not
    (Inductor's own generator would give other, equally random, draws)."""
    return CompiledOrEager(fn, what, dynamic=False, options={"fallback_random": True})
