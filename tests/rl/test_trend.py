"""The Mann-Kendall trend test behind the reward-hacking monitor: its null law is exact,
its approximation errs on the safe side, and its false-alarm rate is the one it states."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from vlmrm.run.trend import EXACT_POINTS, inversions_cdf, mann_kendall, p_at_least


@pytest.mark.parametrize("n", range(1, 8))
def test_null_law_matches_every_permutation(n):
    counts = np.zeros(n * (n - 1) // 2 + 1)
    for perm in itertools.permutations(range(n)):
        counts[sum(a > b for a, b in itertools.combinations(perm, 2))] += 1
    np.testing.assert_allclose(inversions_cdf(n), np.cumsum(counts) / math.factorial(n))


def test_normal_approximation_is_close_and_conservative_beyond_the_exact_range():
    n = EXACT_POINTS
    pairs, cdf = n * (n - 1) // 2, inversions_cdf(n)
    checked = 0
    for s in range(pairs % 2 + 2 * 300, pairs // 2, 2):  # tails from ~1e-1 down to 1e-4
        exact = cdf[(pairs - s) // 2]
        sd = math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
        approx = 0.5 * math.erfc((s - 1) / (sd * math.sqrt(2)))
        if exact < 1e-4:
            break
        assert exact <= approx <= 1.2 * exact, (s, exact, approx)
        checked += 1
    assert checked > 100
    assert p_at_least(0, n + 1) == pytest.approx(0.5, abs=0.01)  # the approximation's path


def test_perfect_and_absent_trends():
    rising = mann_kendall(range(7))
    assert (rising.s, rising.tau) == (21, 1.0)
    assert rising.p_rising == pytest.approx(1 / math.factorial(7))
    assert rising.p_falling == pytest.approx(1.0)
    falling = mann_kendall([3.0, 2.0, 1.0])
    assert falling.tau == -1.0 and falling.p_falling == pytest.approx(1 / 6)
    flat = mann_kendall([2.0] * 9)
    assert flat.s == 0 and flat.tau is None and flat.p_rising > 0.5


@pytest.mark.parametrize(("n", "ties"), [(20, False), (20, True), (150, False)])
def test_false_alarm_rate_is_at_most_the_stated_rate(n, ties):
    """4,000 trend-free windows (continuous values, integer values with many ties, and the
    approximation's range): the share whose p-value passes 5 % stays within sampling error
    of 5 % (binomial sd 0.34 %), or below it when ties make the test conservative."""
    rng = np.random.default_rng(0)
    windows = rng.integers(0, 4, (4000, n)) if ties else rng.normal(size=(4000, n))
    trends = [mann_kendall(w) for w in windows]
    for side in ("p_rising", "p_falling"):
        rate = np.mean([getattr(t, side) <= 0.05 for t in trends])
        assert rate <= 0.05 + 0.012
        if not ties:
            assert rate >= 0.05 - 0.012
