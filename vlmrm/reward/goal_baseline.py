"""Goal-baseline regularized reward on embeddings (Rocamonde et al., 2024). Backend-agnostic.

``r(x) = 1 - 1/2 * ||(x - g) P||^2`` with ``P = alpha * d d^T / ||d||^2 + (1 - alpha) I`` and
``d = g - b``. Because P mixes a projection and the identity, the squared norm has the
closed form ``alpha (2 - alpha) <v, d_hat>^2 + (1 - alpha)^2 ||v||^2`` with ``v = x - g``,
which costs O(D) per frame instead of O(D^2). The ``goal_baseline`` formula
(:class:`vlmrm.reward.formulas.GoalBaseline`) computes it.
"""

from __future__ import annotations

import torch


def goal_baseline_reward(x: torch.Tensor, goal: torch.Tensor, baseline: torch.Tensor,
                         alpha: float) -> torch.Tensor:
    """Reward of normalised image embeddings ``x [B, D]`` -> ``[B]``."""
    d = goal - baseline
    d_hat = d / d.norm().clamp_min(1e-12)
    v = x - goal
    along = v @ d_hat
    sq = alpha * (2 - alpha) * along.square() + (1 - alpha) ** 2 * v.square().sum(-1)
    return 1 - 0.5 * sq
