"""Goal-baseline regularized reward on embeddings (Rocamonde et al., 2024). Backend-agnostic.

``r(x) = 1 - 1/2 * ||(x - g) P||^2`` with ``P = alpha * d d^T / ||d||^2 + (1 - alpha) I`` and
``d = g - b``. Because P mixes a projection and the identity, the squared norm has the
closed form ``alpha (2 - alpha) <v, d_hat>^2 + (1 - alpha)^2 ||v||^2`` with ``v = x - g``,
which costs O(D) per frame instead of O(D^2).
"""

from __future__ import annotations

import torch
from torch import nn


def mean_embedding(embeddings: torch.Tensor) -> torch.Tensor:
    """Mean of L2-normalised prompt embeddings ``[N, D]`` -> ``[D]`` (several prompts average)."""
    normed = embeddings / embeddings.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return normed.mean(dim=0)


def projection_matrix(goal: torch.Tensor, baseline: torch.Tensor, alpha: float) -> torch.Tensor:
    """The explicit ``P`` (for reference and tests; the reward uses the closed form)."""
    d = (goal - baseline).unsqueeze(-1)
    eye = torch.eye(goal.shape[-1], dtype=goal.dtype, device=goal.device)
    return alpha * (d @ d.T) / (d.T @ d).clamp_min(1e-12) + (1 - alpha) * eye


def goal_baseline_reward(x: torch.Tensor, goal: torch.Tensor, baseline: torch.Tensor,
                         alpha: float) -> torch.Tensor:
    """Reward of normalised image embeddings ``x [B, D]`` -> ``[B]``."""
    d = goal - baseline
    d_hat = d / d.norm().clamp_min(1e-12)
    v = x - goal
    along = v @ d_hat
    sq = alpha * (2 - alpha) * along.square() + (1 - alpha) ** 2 * v.square().sum(-1)
    return 1 - 0.5 * sq


class GoalBaselineReward(nn.Module):
    """:func:`goal_baseline_reward` with fixed goal/baseline embeddings as buffers."""

    def __init__(self, goal: torch.Tensor, baseline: torch.Tensor, alpha: float) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha} must lie in [0, 1]")
        self.alpha = float(alpha)
        self.register_buffer("goal", goal.detach().float().clone())
        self.register_buffer("baseline", baseline.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return goal_baseline_reward(x.float(), self.goal, self.baseline, self.alpha)

    def extra_repr(self) -> str:
        return f"dim={self.goal.shape[-1]}, alpha={self.alpha}"
