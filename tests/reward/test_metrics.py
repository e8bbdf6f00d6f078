"""Reward-quality metrics: against scipy, and EPIC on hand-computed cases."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from vlmrm.reward.metrics import (
    canonicalize_pairwise,
    epic_distance,
    epic_distance_pairwise,
    pearson,
    rankdata,
    roc_auc,
    separation,
    spearman,
)

F64 = torch.float64
gens = st.integers(0, 2**31 - 1).map(lambda seed: torch.Generator().manual_seed(seed))
# Small integer values make many ties; both arrays of one length.
tied_pairs = st.integers(3, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-3, 3), min_size=n, max_size=n),
    st.lists(st.integers(-3, 3), min_size=n, max_size=n)))


@settings(max_examples=80, deadline=None)
@given(pair=tied_pairs, scale=st.sampled_from([1.0, 0.1, 1e3]))
def test_spearman_and_pearson_match_scipy_with_ties(pair, scale):
    a, b = (np.array(v, dtype=float) * scale for v in pair)
    assert np.allclose(rankdata(a).numpy(), stats.rankdata(a))
    if np.all(a == a[0]) or np.all(b == b[0]):
        assert math.isnan(spearman(a, b)) and math.isnan(pearson(a, b))
        return
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)


@settings(max_examples=80, deadline=None)
@given(scores=st.lists(st.integers(-4, 4), min_size=2, max_size=50),
       data=st.data())
def test_roc_auc_is_mann_whitney_u_over_n1_n0_with_ties(scores, data):
    labels = data.draw(st.lists(st.booleans(), min_size=len(scores), max_size=len(scores))
                       .filter(lambda ls: 0 < sum(ls) < len(ls)))
    s, y = np.array(scores, dtype=float), np.array(labels)
    u = stats.mannwhitneyu(s[y], s[~y]).statistic
    assert roc_auc(s, y) == pytest.approx(u / (y.sum() * (~y).sum()), abs=1e-12)
    assert roc_auc(torch.tensor(s), torch.tensor(y, dtype=torch.int64)) == roc_auc(s, y)


def test_roc_auc_hand_cases_and_bad_labels():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5], [0, 1, 1]) == 0.5
    assert roc_auc([1, 2, 2, 3], [0, 0, 1, 1]) == 0.875  # the tie (2, 2) counts half
    with pytest.raises(ValueError, match="single class"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="boolean or 0/1"):
        roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0.1, float("nan")], [0, 1])


def test_separation_is_cohens_d_with_pooled_std():
    # goal [1, 3] mean 2, other [0, 2] mean 1; within SS = 2 + 2, over n - 2 = 2: std sqrt 2.
    assert separation([1, 3, 0, 2], [1, 1, 0, 0]) == pytest.approx(1 / math.sqrt(2))
    # goal [4, 6, 5] mean 5, other [1, 1] mean 1; SS = 2 + 0 over 3: std sqrt(2/3).
    assert separation([4, 1, 6, 1, 5], [1, 0, 1, 0, 1]) == pytest.approx(4 / math.sqrt(2 / 3))
    assert separation([5, 5, 1, 1], [True, True, False, False]) == math.inf
    assert separation([1, 1, 5, 5], [True, True, False, False]) == -math.inf
    assert math.isnan(separation([2, 2, 2], [1, 0, 0]))
    with pytest.raises(ValueError, match="at least 3"):
        separation([1, 2], [1, 0])


# EPIC, state-only rewards on a fixed set of frames.

def test_epic_identical_rewards_is_zero():
    r = torch.tensor([0.3, -1.0, 2.5, 0.7])
    assert epic_distance(r, r) == 0.0


@settings(max_examples=60, deadline=None)
@given(gen=gens, scale=st.floats(1e-3, 1e3), shift=st.floats(-1e3, 1e3))
def test_epic_positive_affine_transform_is_zero_and_negation_is_one(gen, scale, shift):
    r = torch.randn(50, generator=gen, dtype=F64)
    assert epic_distance(r, scale * r + shift) == pytest.approx(0.0, abs=1e-6)
    assert epic_distance(r, -scale * r + shift) == pytest.approx(1.0, abs=1e-12)


def test_epic_hand_computed_uncorrelated_and_constant():
    # [1, -1, 1, -1] vs [1, 1, -1, -1]: rho = 0 -> sqrt(1/2).
    assert epic_distance([1, -1, 1, -1], [1, 1, -1, -1]) == pytest.approx(math.sqrt(0.5))
    assert math.isnan(epic_distance([0.1, 0.1, 0.1], [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="differ in length"):
        epic_distance([1.0, 2.0], [1.0, 2.0, 3.0])


# EPIC on transitions between sample states, where it claims invariance to shaping.

def shaped(f: torch.Tensor, phi: torch.Tensor, gamma: float) -> torch.Tensor:
    """r[i, j] = f(s_j) + gamma Phi(s_j) - Phi(s_i): a state reward with potential shaping."""
    return f[None, :] + gamma * phi[None, :] - phi[:, None]


@settings(max_examples=60, deadline=None)
@given(gen=gens, gamma=st.floats(0.0, 1.0), n=st.integers(3, 20), covered=st.booleans())
def test_epic_pairwise_is_unchanged_by_potential_shaping(gen, gamma, n, covered):
    f1, f2, phi1, phi2 = torch.randn(4, n, generator=gen, dtype=F64) * 3
    r1 = torch.randn(n, n, generator=gen, dtype=F64)  # a general transition reward
    r2 = f2[None, :].expand(n, n)
    coverage = torch.rand(n, n, generator=gen, dtype=F64) if covered else None
    base = epic_distance_pairwise(r1, r2, gamma, coverage)
    r1s = r1 + gamma * phi1[None, :] - phi1[:, None]
    r2s = shaped(f2, phi2, gamma)
    assert epic_distance_pairwise(r1s, r2s, gamma, coverage) == pytest.approx(base, abs=1e-9)
    torch.testing.assert_close(canonicalize_pairwise(r1s, gamma),
                               canonicalize_pairwise(r1, gamma))
    # A shaped state reward against its unshaped self: distance 0.
    assert epic_distance_pairwise(shaped(f1, phi1, gamma), f1[None, :].expand(n, n), gamma,
                                  coverage) == pytest.approx(0.0, abs=1e-6)


def test_epic_pairwise_shaping_with_another_gamma_is_not_removed():
    gen = torch.Generator().manual_seed(0)
    f, phi = torch.randn(2, 10, generator=gen, dtype=F64)
    assert epic_distance_pairwise(shaped(f, phi, 0.5), f[None, :].expand(10, 10), 0.9) > 0.1


@settings(max_examples=40, deadline=None)
@given(gen=gens, gamma=st.floats(0.0, 1.0), n=st.integers(3, 20))
def test_state_only_epic_equals_pairwise_epic_of_next_state_rewards(gen, gamma, n):
    f1, f2 = torch.randn(2, n, generator=gen, dtype=F64)
    pairwise = epic_distance_pairwise(f1[None, :].expand(n, n), f2[None, :].expand(n, n), gamma)
    assert epic_distance(f1, f2) == pytest.approx(pairwise, abs=1e-9)
    # For a state-only reward the canonical reward is f(s') - mean f, whatever gamma.
    torch.testing.assert_close(canonicalize_pairwise(f1[None, :].expand(n, n), gamma),
                               (f1 - f1.mean())[None, :].expand(n, n))


def test_weighted_pearson_equals_repeating_samples():
    a, b = np.array([0.1, 0.5, 0.2, 0.9]), np.array([1.0, 0.0, 2.0, 3.0])
    w = np.array([1, 3, 0, 2])
    assert pearson(a, b, w) == pytest.approx(pearson(np.repeat(a, w), np.repeat(b, w)))
