"""A trend test with a known false-alarm rate: Mann-Kendall (Kendall's S against time).

For values ``x_1 .. x_n`` in time order, ``S = sum over i < j of sign(x_j - x_i)``: pairs
that rise minus pairs that fall. When the values have no trend, in the strict sense that
every order of them is equally likely (independent draws from one distribution, or any
exchangeable sequence), the later-minus-earlier comparisons are those of a uniformly random
permutation, so ``S = n(n-1)/2 - 2 * inversions`` and the number of inversions follows the
Mahonian distribution. That law does not depend on the values' distribution, so a threshold
taken from it gives the stated false-alarm rate whatever the returns look like:

- ``n <= EXACT_POINTS``: the law is computed exactly (the n-th item adds 0 .. n-1
  inversions, uniformly and independently of the others: one cumulative sum per item);
- larger ``n``: the normal approximation with variance ``n(n-1)(2n+5)/18`` and continuity
  correction 1 (``S`` moves in steps of 2). Near 1e-3 it overstates the tail by about 6 %
  at n = 100 and less beyond (conservative; checked against the exact law in the tests).

Ties (equal values, e.g. integer returns) count 0 in ``S``. They shrink the spread of ``S``,
so the untied law's tail is then an upper bound: p-values err on the conservative side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

#: Up to this many points the null law of ``S`` is exact (at most 4,950 pairs: cheap).
EXACT_POINTS = 100


@cache
def inversions_cdf(n: int) -> np.ndarray:
    """``P(inversions <= k)`` for a uniformly random permutation of ``n`` items,
    ``k = 0 .. n(n-1)/2``."""
    pmf = np.ones(1)
    for m in range(2, n + 1):
        # Item m adds 0 .. m-1 inversions uniformly: a moving sum of width m, over m.
        padded = np.concatenate([[0.0], np.cumsum(np.concatenate([pmf, np.zeros(m - 1)]))])
        k = np.arange(len(pmf) + m - 1)
        pmf = (padded[k + 1] - padded[np.maximum(k - m + 1, 0)]) / m
    return np.minimum(np.cumsum(pmf), 1.0)


def p_at_least(s: int, n: int) -> float:
    """``P(S >= s)`` for ``n`` points with no trend (and no ties)."""
    pairs = n * (n - 1) // 2
    if s > pairs:
        return 0.0
    if n <= EXACT_POINTS:
        # S >= s  <=>  inversions <= (pairs - s) / 2 (S has the parity of pairs).
        return float(inversions_cdf(n)[min((pairs - s) // 2, pairs)])
    sd = math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    return 0.5 * math.erfc((s - 1) / (sd * math.sqrt(2)))


@dataclass(frozen=True)
class Trend:
    """Kendall's ``S`` of values against time, its one-sided p-values and Kendall's tau-b."""

    n: int
    s: int
    #: ``P(S >= s)`` and ``P(S <= s)`` when there is no trend: small = rising / falling.
    p_rising: float
    p_falling: float
    #: ``S`` over its largest possible value given the ties, in [-1, 1]; None: constant.
    tau: float | None


def mann_kendall(values) -> Trend:
    """The trend of ``values`` (time order) by Kendall's ``S``; see the module docstring."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    s = int(np.sign(np.triu(x[None, :] - x[:, None], 1)).sum())
    pairs = n * (n - 1) // 2
    _, counts = np.unique(x, return_counts=True)
    tied = int((counts * (counts - 1) // 2).sum())
    tau = None if tied == pairs else s / math.sqrt(pairs * (pairs - tied))
    return Trend(n, s, p_at_least(s, n), p_at_least(-s, n), tau)
