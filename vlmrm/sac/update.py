"""The SAC update: TorchRL's losses (the reference) or vlmrm's fast ones
(:mod:`vlmrm.sac.fast_loss`), batched replay sampling and the target update.

TorchRL's ``SACLoss`` / ``DiscreteSACLoss`` stay the containers of every trained tensor
(actor, stacked twin critics, target critics, ``log_alpha``): Lightning checkpoints them and
DDP wraps them whichever ``agent.loss_impl`` runs. One update is always one backward of the
summed losses and one optimizer step (DDP needs a single backward per step); the caller
passes Lightning's ``manual_backward`` and optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn
from torchrl.data import TensorDictReplayBuffer
from torchrl.objectives import DiscreteSACLoss, LossModule, SACLoss, SoftUpdate

from vlmrm.sac.fast_loss import OUTPUTS, FastSACLoss, Minibatch
from vlmrm.seeds import RANK_STRIDE

#: The replay generator's seed offset from ``cfg.seed`` (any fixed number: the generator is
#: a stream of its own, unrelated to the envs' seeds, which use the same rank stride).
REPLAY_SEED_OFFSET = 555


# -- the optimizer ------------------------------------------------------------------------
def param_groups(loss: LossModule) -> list[dict[str, list[Tensor]]]:
    """Actor, critics and (when learned) log_alpha: SAC's three losses touch disjoint
    parameters, so one backward of their sum and one Adam step equal three updates."""
    groups = [list(loss.actor_network_params.values(True, True)),
              list(loss.qvalue_network_params.values(True, True))]
    if loss.log_alpha.requires_grad:
        groups.append([loss.log_alpha])
    return [{"params": g} for g in groups]


class CPUAdam(torch.optim.Adam):
    """Adam that skips the CUDA-graph capture check when no parameter is on a GPU.

    On a CUDA build of torch without a GPU, that check (run by every ``step``) probes NVML
    for devices each time: 0.3 ms per step here, about 5 % of a small SAC update."""

    def _accelerator_graph_capture_health_check(self) -> None:
        if any(p.device.type != "cpu" for g in self.param_groups for p in g["params"]):
            super()._accelerator_graph_capture_health_check()


def make_optimizer(loss: LossModule, lr: float, loss_impl: str) -> torch.optim.Adam:
    """``torchrl``: Adam as it always was (torch's default: a per-tensor loop on CPU).
    ``fast``: ``fused=True``, one kernel for all tensors of a group: 3-4 % more updates/s
    than ``foreach=True`` or the loop on CPU (CPU-time medians, Pendulum and Humanoid sizes);
    its arithmetic differs from theirs by an ulp or so (``foreach`` would be bit-identical
    to the loop)."""
    if loss_impl == "torchrl":
        return torch.optim.Adam(param_groups(loss), lr=lr)
    return CPUAdam(param_groups(loss), lr=lr, fused=True)


def replay_seed(seed: int, rank: int) -> int:
    return seed + RANK_STRIDE * rank + REPLAY_SEED_OFFSET


def learner_seed(seed: int, rank: int) -> int:
    """The seed of a DDP rank's global generators (loss noise, sequential exploration,
    TorchRL's replay sampler): ``seed`` itself on rank 0, so rank 0 draws what it always did."""
    return (seed + RANK_STRIDE * rank) % 2**32  # numpy takes seeds below 2**32


class ReplaySampler:
    """Draws all k minibatches of an iteration at once: one ``randint`` of k*B indices on
    its own generator, one gather from the buffer's storage, one copy to the device.

    Sampling with replacement, uniformly over the stored transitions, as TorchRL's
    ``RandomSampler``. The generator is the rank's own (never the global RNG, which envs,
    the actor's exploration noise and the loss's reparameterisation draw from), so its state
    is a single object that a checkpoint can save and restore.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def indices(self, stored: int, k: int, batch_size: int) -> Tensor:
        """``[k * B]`` indices in ``[0, stored)``."""
        if stored < 1:
            raise ValueError("cannot sample from an empty replay buffer")
        return torch.randint(stored, (k * batch_size,), generator=self.generator)

    def sample(self, buffer: TensorDictReplayBuffer, k: int, batch_size: int,
               device: torch.device) -> Minibatch:
        idx = self.indices(len(buffer), k, batch_size)
        td = buffer.storage.get(idx).reshape(k, batch_size)
        return Minibatch.from_tensordict(td.to(device, non_blocking=True))


# -- target critics -----------------------------------------------------------------------
class TargetUpdate:
    """``target <- target + tau * (critic - target)`` for every tensor in one
    ``torch._foreach_lerp_``: TorchRL's ``SoftUpdate.step`` in one kernel launch.

    The weight is ``1 - (1 - tau)``, which is what ``SoftUpdate`` computes from its
    ``eps = 1 - tau``: the two give bit-identical targets."""

    def __init__(self, loss: LossModule, tau: float) -> None:
        self.weight = 1 - (1 - tau)
        # The objects, not their .data: .to(device) gives them new data, not new objects.
        self.sources = list(loss.qvalue_network_params.values(True, True))
        self.targets = list(loss.target_qvalue_network_params.values(True, True))
        # Registered as TorchRL's own updaters do: TorchRL warns whenever target parameters
        # are read from a loss that has no updater.
        associated = getattr(loss, "_has_update_associated", {})
        for key in associated:
            associated[key] = True

    @torch.no_grad()
    def step(self) -> None:
        torch._foreach_lerp_(self.targets, self.sources, self.weight)


# -- the update loops ---------------------------------------------------------------------
class Optimizer(Protocol):
    """A torch optimizer or Lightning's ``LightningOptimizer`` wrapping one."""

    def step(self, closure: Callable | None = None) -> object: ...

    def zero_grad(self, set_to_none: bool = True) -> None: ...


Backward = Callable[[Tensor], object]


class TorchRLUpdate:
    """The reference update, exactly as vlmrm always ran it: per update a ``sample()``
    from the replay buffer (the global RNG), TorchRL's loss, one backward, one step,
    TorchRL's ``SoftUpdate``."""

    def __init__(self, loss: LossModule, tau: float) -> None:
        self.loss = loss
        self.target = SoftUpdate(loss, tau=tau)

    @property
    def loss_forward(self) -> nn.Module:
        """The module whose forward computes one update's losses (hooks go here)."""
        return self.loss

    def run(self, buffer: TensorDictReplayBuffer, steps: int, device: torch.device,
            backward: Backward, optimizer: Optimizer, *, batch_size: int) -> dict[str, Tensor]:
        """``steps`` updates on minibatches of ``batch_size`` transitions; the loss outputs
        summed over them (0-dim tensors on device)."""
        totals: dict[str, Tensor] = {}
        for _ in range(steps):
            sample = buffer.sample(batch_size).to(device)
            out = self.loss(sample)
            loss = sum(v for k, v in out.items() if k.startswith("loss_"))
            optimizer.zero_grad()
            backward(loss)
            optimizer.step()
            self.target.step()
            for key, value in out.items():
                totals[key] = totals.get(key, 0) + value.detach().float().mean()
        return totals


class FastUpdate:
    """The fast update: an iteration's minibatches sampled at once on the rank's own
    generator, :class:`FastSACLoss`, one backward, one step, :class:`TargetUpdate`."""

    def __init__(self, loss: SACLoss | DiscreteSACLoss, tau: float, generator: torch.Generator,
                 compile: bool = False, share_obs: bool | None = None) -> None:
        self.fast_loss = FastSACLoss(loss, compile=compile, share_obs=share_obs)
        self.target = TargetUpdate(loss, tau)
        self.sampler = ReplaySampler(generator)

    @property
    def loss_forward(self) -> nn.Module:
        return self.fast_loss

    def run(self, buffer: TensorDictReplayBuffer, steps: int, device: torch.device,
            backward: Backward, optimizer: Optimizer, *, batch_size: int) -> dict[str, Tensor]:
        if steps < 1:
            return {}
        batch = self.sampler.sample(buffer, steps, batch_size, device)
        total: Tensor | None = None
        for i in range(steps):
            out = self.fast_loss(batch.at(i))
            optimizer.zero_grad()
            backward(out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"])
            optimizer.step()
            self.target.step()
            # Stacked, so the caller reads all five sums with one device-to-host copy.
            values = torch.stack([out[k].detach().float() for k in OUTPUTS])
            total = values if total is None else total + values
        return dict(zip(OUTPUTS, total.unbind(), strict=True))


SACUpdate = TorchRLUpdate | FastUpdate


def make_update(loss: SACLoss | DiscreteSACLoss, loss_impl: str, tau: float,
                generator: torch.Generator, compile: bool = False) -> SACUpdate:
    """The update ``agent.loss_impl`` names (``generator`` only feeds the fast one)."""
    if loss_impl == "torchrl":
        return TorchRLUpdate(loss, tau)
    return FastUpdate(loss, tau, generator, compile=compile)
