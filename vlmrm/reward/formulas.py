"""Reward formulas as composable modules over (image embedding, prompt embeddings).

A chain is one *embedding formula*, image embeddings ``x [B, D]`` (L2-normalised) ->
rewards ``[B]``, followed by *scalar transforms*, rewards ``[B]`` -> ``[B]``. Backends know
nothing of them: they only produce the embeddings. The built-ins below are registered, with
their parameters and help lines, in :mod:`vlmrm.reward.spec` (``register_formula``).

Similarity of ``x`` to a prompt set is the cosine with the set's mean direction,
``s(x) = x . m / ||m||`` with ``m`` the mean of the set's normalised prompt embeddings (CLIP's
prompt-ensemble convention; with one prompt it is the plain cosine). ``goal_baseline`` keeps
the paper's unrenormalised means ``g``, ``b`` so that its numbers equal today's reward.

Prompt embeddings are non-persistent buffers: ``.to(device)`` moves them, but a
``state_dict`` only holds state the config cannot rebuild (``running_norm``'s statistics).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vlmrm.reward.goal_baseline import goal_baseline_reward
from vlmrm.reward.spec import EMBEDDING, FORMULAS, MIX, TransformItem, parse_transform


def _unit_rows(e: torch.Tensor) -> torch.Tensor:
    return e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    # Half-precision encoders still get float32 reward arithmetic; float64 stays float64.
    return torch.promote_types(t.dtype, torch.float32)


@dataclass(frozen=True)
class PromptEmbeddings:
    """L2-normalised prompt embeddings: ``goal [Ng, D]``, ``baseline [Nb, D]``,
    ``negative [Nn, D]`` (``Nn`` may be 0). Build from raw encoder output with :meth:`from_raw`.
    """

    goal: torch.Tensor
    baseline: torch.Tensor
    negative: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("goal", "baseline", "negative"):
            e = getattr(self, name)
            if e.ndim != 2 or e.shape[-1] != self.goal.shape[-1]:
                raise ValueError(f"{name} embeddings have shape {tuple(e.shape)}; expected "
                                 f"[N, {self.goal.shape[-1]}] like the goal's.")
        if self.goal.shape[0] == 0 or self.baseline.shape[0] == 0:
            raise ValueError("goal and baseline need at least one prompt embedding each.")
        norms = torch.cat([self.goal, self.baseline, self.negative]).norm(dim=-1)
        # Loose enough for half-precision rows; raw encoder output is far from unit norm.
        if not bool(((norms - 1).abs() <= 1e-2).all()):
            raise ValueError("prompt embeddings must be L2-normalised rows; build from raw "
                             "encoder output with PromptEmbeddings.from_raw.")

    @classmethod
    def from_raw(cls, goal: torch.Tensor, baseline: torch.Tensor,
                 negative: torch.Tensor | None = None) -> PromptEmbeddings:
        """Normalise each row; ``negative=None`` means no negative prompts."""
        if negative is None:
            negative = goal.new_zeros((0, goal.shape[-1]))
        return cls(_unit_rows(goal), _unit_rows(baseline), _unit_rows(negative))

    @property
    def has_negative(self) -> bool:
        return self.negative.shape[0] > 0


def _direction(e: torch.Tensor) -> torch.Tensor:
    """Unit mean direction of a set of normalised embeddings ``[N, D]`` -> ``[D]``."""
    m = e.mean(dim=0)
    return m / m.norm().clamp_min(1e-12)


def _add_prompt_buffer(module: nn.Module, name: str, t: torch.Tensor) -> None:
    # Not persistent: the config rebuilds prompts, so checkpoints need not (and should not
    # silently override them).
    module.register_buffer(name, t.detach().to(_compute_dtype(t)).clone(), persistent=False)


class GoalBaseline(nn.Module):
    """``1 - 1/2 ||(x - g) P||^2`` via :func:`goal_baseline_reward`; ``g``, ``b`` are the
    (unrenormalised) means of the goal and baseline sets, exactly as today's reward.
    At ``alpha=0``, for unit ``x``: ``r = x . g + 1/2 (1 - ||g||^2)``, affine in the cosine.
    """

    def __init__(self, prompts: PromptEmbeddings, alpha: float) -> None:
        super().__init__()
        self.alpha = float(alpha)
        _add_prompt_buffer(self, "goal", prompts.goal.mean(dim=0))
        _add_prompt_buffer(self, "baseline", prompts.baseline.mean(dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return goal_baseline_reward(x.to(self.goal.dtype), self.goal, self.baseline, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Softmax(nn.Module):
    """Probability of the goal class: ``softmax([s_g, s_b, s_n] / T)[0]``, one logit per
    prompt set (``s_n`` only when there are negative prompts). With no negatives this is
    ``sigmoid((s_g - s_b) / T)``.
    """

    def __init__(self, prompts: PromptEmbeddings, temperature: float) -> None:
        super().__init__()
        self.temperature = float(temperature)
        sets = [prompts.goal, prompts.baseline]
        if prompts.has_negative:
            sets.append(prompts.negative)
        directions = torch.stack([_direction(e) for e in sets])  # [K, D]
        _add_prompt_buffer(self, "directions", directions)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[..., K]`` of the classes (goal, baseline[, negative])."""
        logits = x.to(self.directions.dtype) @ self.directions.T / self.temperature
        return torch.log_softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_probs(x)[..., 0].exp()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, classes={self.directions.shape[0]}"


class Contrastive(nn.Module):
    """``s_g(x) - s_n(x)``: cosine with the goal direction minus cosine with the negative
    direction, or with the baseline direction when there are no negative prompts.
    Equals ``T * (log p_goal - log p_last)`` of :class:`Softmax` at any temperature ``T``.
    """

    def __init__(self, prompts: PromptEmbeddings) -> None:
        super().__init__()
        other = prompts.negative if prompts.has_negative else prompts.baseline
        self.against = "negative" if prompts.has_negative else "baseline"
        _add_prompt_buffer(self, "goal", _direction(prompts.goal))
        _add_prompt_buffer(self, "other", _direction(other))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.goal.dtype)
        return x @ self.goal - x @ self.other

    def extra_repr(self) -> str:
        return f"against={self.against}"


class Threshold(nn.Module):
    """``above`` where ``r >= value``, else ``below``: a binary success reward (float)."""

    def __init__(self, value: float, above: float = 1.0, below: float = 0.0) -> None:
        super().__init__()
        self.value, self.above, self.below = float(value), float(above), float(below)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        dtype = r.dtype if r.is_floating_point() else torch.float32
        hit = r >= self.value
        # full_like fills on the device (no host-to-device copy per call).
        return torch.where(hit, torch.full_like(hit, self.above, dtype=dtype),
                           torch.full_like(hit, self.below, dtype=dtype))

    def extra_repr(self) -> str:
        return f"value={self.value}, above={self.above}, below={self.below}"


class RunningNorm(nn.Module):
    """``(r - mean) / sqrt(var + eps)``, clipped to ``[-clip, clip]`` when ``clip`` is set.

    ``mean`` and ``var`` (population variance) are over every reward seen in training mode.
    Training mode updates first, then normalises, so the first batch is scaled by its own
    statistics; eval mode only normalises. With no statistics yet it is the identity.
    ``count``, ``mean`` and ``m2`` (sum of squared deviations) are float64 buffers: they are
    saved in ``state_dict`` and restored on resume. Under DDP each rank keeps its own; fold
    in another's with :meth:`merge_`.
    """

    def __init__(self, eps: float = 1e-8, clip: float | None = None) -> None:
        super().__init__()
        self.eps = float(eps)
        self.clip = None if clip is None else float(clip)
        for name in ("count", "mean", "m2"):
            self.register_buffer(name, torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def merge_(self, count: torch.Tensor | float, mean: torch.Tensor | float,
               m2: torch.Tensor | float) -> None:
        """Fold in the statistics of other rewards exactly (Chan, Golub & LeVeque's
        parallel algorithm). In place, so buffers stay normal tensors under inference_mode.
        """
        count, mean, m2 = (torch.as_tensor(v, dtype=self.mean.dtype, device=self.mean.device)
                           for v in (count, mean, m2))
        total = self.count + count
        delta = mean - self.mean
        share = count / total.clamp_min(1)  # 0 when both are empty: nothing changes
        self.m2.add_(m2 + delta.square() * self.count * share)
        self.mean.add_(delta * share)
        self.count.copy_(total)

    @torch.no_grad()
    def update(self, r: torch.Tensor) -> None:
        """Add a batch of rewards (any shape) to the statistics."""
        r = r.detach().to(self.mean.dtype).flatten()
        if r.numel() == 0:
            return
        mean = r.mean()
        self.merge_(r.numel(), mean, (r - mean).square().sum())

    @property
    def var(self) -> torch.Tensor:
        return self.m2 / self.count.clamp_min(1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.update(r)
        # torch.where instead of `if count > 0` avoids a host-device sync per batch.
        scale = torch.where(self.count > 0, (self.var + self.eps).rsqrt(),
                            torch.ones_like(self.var))
        out = (r.to(self.mean.dtype) - self.mean) * scale
        if self.clip is not None:
            out = out.clamp(-self.clip, self.clip)
        return out.to(r.dtype if r.is_floating_point() else torch.float32)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, clip={self.clip}"


def build_reward_fn(spec: Sequence[Mapping[str, Any] | str | TransformItem],
                    prompts: PromptEmbeddings, where: str = "reward.transform"
                    ) -> nn.Sequential:
    """The chain ``x [B, D] -> rewards [B]`` of a spec (checked by
    :func:`vlmrm.reward.spec.parse_transform`; a bad item raises ``ValueError``).
    """
    modules = []
    for item in parse_transform(spec, where):
        info = FORMULAS[item.name]
        if info.kind == MIX:  # its terms are not in the frames: the Scorer adds them
            continue
        build = info.factory()
        module = build(prompts, **item.params) if info.kind == EMBEDDING else build(**item.params)
        if not isinstance(module, nn.Module):
            raise TypeError(f"formula {item.name!r} built {type(module).__name__}, not a "
                            "torch.nn.Module: register_formula's build must return one.")
        modules.append(module)
    return nn.Sequential(*modules)
