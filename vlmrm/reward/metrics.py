"""Reward-model quality on a fixed sample: correlations, ROC-AUC, separation, EPIC.

Every function takes 1-D tensors, numpy arrays or sequences of numbers, computes in float64
on the CPU and returns a Python float. Conventions for bad input:

- ``ValueError`` for malformed input: not 1-D, mismatched lengths, fewer than 2 values, NaN,
  labels that are not binary or hold a single class.
- ``nan`` where the statistic is undefined for well-formed data: a constant reward has no
  correlation, so ``pearson``, ``spearman`` and the EPIC distances return ``nan`` for it
  (as scipy does). ``separation`` returns ``nan`` or ``+-inf`` when the pooled std is 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

import torch

if TYPE_CHECKING:
    import numpy as np

Values: TypeAlias = "torch.Tensor | np.ndarray | Sequence[float]"


def _vector(x: Values, name: str, min_len: int = 2) -> torch.Tensor:
    t = torch.as_tensor(x).detach().cpu().to(torch.float64)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}.")
    if t.numel() < min_len:
        raise ValueError(f"{name} needs at least {min_len} values, got {t.numel()}.")
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN.")
    return t


def _pair(a: Values, b: Values, names: tuple[str, str] = ("a", "b")
          ) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _vector(a, names[0]), _vector(b, names[1])
    if x.shape != y.shape:
        raise ValueError(f"{names[0]} and {names[1]} differ in length: "
                         f"{x.numel()} vs {y.numel()}.")
    return x, y


def _labels(labels: Values, n: int) -> torch.Tensor:
    t = torch.as_tensor(labels).detach().cpu()
    if t.ndim != 1 or t.numel() != n:
        raise ValueError(f"labels must be 1-D with {n} values, got shape {tuple(t.shape)}.")
    if t.dtype != torch.bool:
        if not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"labels must be boolean or 0/1, got values {t.unique().tolist()}.")
        t = t == 1
    if t.all() or not t.any():
        raise ValueError("labels hold a single class; need both goal (1) and non-goal (0).")
    return t


def pearson(a: Values, b: Values, weights: Values | None = None) -> float:
    """Pearson correlation, optionally weighted (``weights >= 0``, e.g. counts); ``nan`` if
    either input is constant over the positively weighted values.
    """
    x, y = _pair(a, b)
    w = torch.ones_like(x) if weights is None else _vector(weights, "weights")
    if w.shape != x.shape or bool((w < 0).any()) or not bool((w > 0).any()):
        raise ValueError("weights must be >= 0, not all 0, one per value.")
    used = w > 0
    # Exact test: a constant would otherwise leave rounding noise to correlate.
    if bool((x[used] == x[used][0]).all()) or bool((y[used] == y[used][0]).all()):
        return math.nan
    w = w / w.sum()
    dx, dy = x - (w @ x), y - (w @ y)
    rho = (w * dx * dy).sum() / ((w * dx.square()).sum() * (w * dy.square()).sum()).sqrt()
    return float(rho.clamp(-1.0, 1.0))


def rankdata(x: Values) -> torch.Tensor:
    """1-based ranks ``[N]`` (float64), ties given the average of the ranks they span."""
    t = _vector(x, "x", min_len=1)
    sorted_t, order = torch.sort(t, stable=True)
    _, group, counts = torch.unique_consecutive(sorted_t, return_inverse=True,
                                                return_counts=True)
    last = counts.cumsum(0).to(torch.float64)  # rank of each tie group's last member
    average = last - (counts - 1) / 2  # mean of ranks last-count+1 .. last
    ranks = torch.empty_like(t)
    ranks[order] = average[group]
    return ranks


def spearman(a: Values, b: Values) -> float:
    """Spearman's rho: Pearson correlation of average ranks; ``nan`` if either is constant."""
    x, y = _pair(a, b)
    return pearson(rankdata(x), rankdata(y))


def roc_auc(scores: Values, labels: Values) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 = goal).

    Computed as the Mann-Whitney ``U`` of the positives over ``n_pos * n_neg``, with average
    ranks: ``P(score_pos > score_neg) + 1/2 P(score_pos == score_neg)``.
    """
    s = _vector(scores, "scores")
    pos = _labels(labels, s.numel())
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    u = rankdata(s)[pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def separation(rewards: Values, labels: Values) -> float:
    """Goal/non-goal separation: Cohen's d, ``(mean_goal - mean_other) / pooled_std``.

    ``pooled_std`` is the square root of the within-class sum of squared deviations over
    ``n - 2`` (needs ``n >= 3``). A pooled std of 0 gives ``+-inf`` (perfectly separated
    constants) or ``nan`` (the same constant in both classes).
    """
    r = _vector(rewards, "rewards", min_len=3)
    goal = _labels(labels, r.numel())
    a, b = r[goal], r[~goal]
    within = (a - a.mean()).square().sum() + (b - b.mean()).square().sum()
    diff = float(a.mean() - b.mean())
    std = math.sqrt(float(within) / (r.numel() - 2))
    if std == 0.0:
        return math.nan if diff == 0.0 else math.copysign(math.inf, diff)
    return diff / std


def pearson_distance(rho: float) -> float:
    """``sqrt((1 - rho) / 2)``: 0 for rho = 1, 1/sqrt(2) for 0, 1 for -1 (nan stays nan)."""
    return math.sqrt((1.0 - rho) / 2.0) if not math.isnan(rho) else math.nan


def epic_distance(r1: Values, r2: Values) -> float:
    """EPIC distance (Gleave et al., 2021) of two state-only rewards on the same frames.

    ``r1[i]``, ``r2[i]`` score frame ``s_i`` as the next state of a transition:
    ``R(s, a, s') = f(s')``. EPIC canonicalises with state distribution ``D_S`` (here the
    empirical distribution of the frames) and independent ``S, S' ~ D_S``::

        C(R)(s, a, s') = R(s, a, s') + E[gamma R(s', A, S') - R(s, A, S') - gamma R(S, A, S')]
                       = f(s') + gamma mu - mu - gamma mu  =  f(s') - mu,   mu = E[f(S)],

    so for any discount ``gamma`` canonicalisation only subtracts the mean. The distance is
    the Pearson distance ``sqrt((1 - rho) / 2)`` of the canonical rewards under the coverage
    distribution (again the frames, uniformly), and since Pearson's rho ignores shifts::

        epic_distance(r1, r2) = sqrt((1 - pearson(r1, r2)) / 2)

    exactly, for the empirical distribution (no sampling-error correction). Claimed
    invariance: positive affine maps ``a r + c`` (``a > 0``) of either reward. Shaping
    ``gamma Phi(s') - Phi(s)`` does not keep a reward state-only; for shaped rewards use
    :func:`epic_distance_pairwise`. ``nan`` if a reward is constant.
    """
    x, y = _pair(r1, r2, ("r1", "r2"))
    return pearson_distance(pearson(x, y))


def canonicalize_pairwise(r: torch.Tensor, gamma: float) -> torch.Tensor:
    """EPIC's canonical reward of ``r [N, N]``, ``r[i, j] = R(s_i -> s_j)``, with ``D_S``
    uniform over the N states (actions ignored, as VLM rewards do)::

        C[i, j] = r[i, j] + gamma m[j] - m[i] - gamma mean(m),   m[i] = mean_k r[i, k]

    ``C`` is unchanged by potential shaping ``r[i, j] + gamma Phi[j] - Phi[i]`` (any ``Phi``,
    same ``gamma``) and by adding a constant.
    """
    m = r.mean(dim=1)
    return r + gamma * m[None, :] - m[:, None] - gamma * m.mean()


def epic_distance_pairwise(r1: Values, r2: Values, gamma: float,
                           coverage: Values | None = None) -> float:
    """EPIC distance of rewards given on all transitions between N sample states.

    ``r1``, ``r2``: ``[N, N]`` with ``r[i, j] = R(s_i -> s_j)``; both are canonicalised by
    :func:`canonicalize_pairwise`, then compared by the Pearson distance
    ``sqrt((1 - rho) / 2)`` weighted by ``coverage [N, N]`` (``>= 0``; e.g. counts of
    observed transitions ``i -> j``; default: all pairs equally). Claimed invariance: for
    either reward, exactly, positive scaling, adding a constant, and potential shaping
    ``gamma Phi(s') - Phi(s)`` with the ``gamma`` given here, whatever the coverage. A
    state-only reward ``f`` is ``r[i, j] = f[j]``, for which this equals
    :func:`epic_distance` under uniform coverage. ``nan`` if a canonical reward is constant.
    """
    mats = [torch.as_tensor(r).detach().cpu().to(torch.float64) for r in (r1, r2)]
    for name, m in zip(("r1", "r2"), mats, strict=True):
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
            raise ValueError(f"{name} must be square [N, N] with N >= 2, got {tuple(m.shape)}.")
        if torch.isnan(m).any():
            raise ValueError(f"{name} contains NaN.")
    if mats[0].shape != mats[1].shape:
        raise ValueError(f"r1 and r2 differ in shape: {tuple(mats[0].shape)} vs "
                         f"{tuple(mats[1].shape)}.")
    c1, c2 = (canonicalize_pairwise(m, gamma).flatten() for m in mats)
    w = None
    if coverage is not None:
        w = torch.as_tensor(coverage).detach().cpu().to(torch.float64)
        if w.shape != mats[0].shape:
            raise ValueError(f"coverage must have shape {tuple(mats[0].shape)}, "
                             f"got {tuple(w.shape)}.")
        w = w.flatten()
    return pearson_distance(pearson(c1, c2, w))
