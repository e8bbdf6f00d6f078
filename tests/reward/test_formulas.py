"""Reward formulas: each one's math, the identities relating them, and the chain's state."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmrm.reward.formulas import (
    Contrastive,
    GoalBaseline,
    PromptEmbeddings,
    RunningNorm,
    Softmax,
    Threshold,
    build_reward_fn,
)
from vlmrm.reward.goal_baseline import goal_baseline_reward
from vlmrm.reward.spec import EMBEDDING, FORMULAS, JUDGE, MIX, REQUIRED

F64 = torch.float64
gens = st.integers(0, 2**31 - 1).map(lambda seed: torch.Generator().manual_seed(seed))
dims = st.integers(3, 48)


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def prompts(gen, dim, ng=1, nb=1, nn=0, dtype=F64) -> PromptEmbeddings:
    raw = [torch.randn(n, dim, generator=gen, dtype=dtype) for n in (ng, nb, nn)]
    return PromptEmbeddings.from_raw(raw[0], raw[1], raw[2] if nn else None)


def frames(gen, dim, n=6, dtype=F64) -> torch.Tensor:
    return unit(torch.randn(n, dim, generator=gen, dtype=dtype))


def cos_to_set(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Reference similarity: cosine with the mean of the set's normalised embeddings."""
    return torch.nn.functional.cosine_similarity(x, e.mean(0)[None], dim=-1)


@settings(max_examples=40, deadline=None)
@given(gen=gens, dim=dims, alpha=st.floats(0.0, 1.0), ng=st.integers(1, 4),
       nb=st.integers(1, 4))
def test_goal_baseline_is_bitwise_todays_reward(gen, dim, alpha, ng, nb):
    raw_g = torch.randn(ng, dim, generator=gen)
    raw_b = torch.randn(nb, dim, generator=gen)
    x = frames(gen, dim, dtype=torch.float32)
    # The paper's reward: g, b the means of the sets' normalised embeddings, not renormalised.
    today = goal_baseline_reward(x, unit(raw_g).mean(0), unit(raw_b).mean(0), alpha)
    chain = build_reward_fn([{"name": "goal_baseline", "alpha": alpha}],
                            PromptEmbeddings.from_raw(raw_g, raw_b))
    assert torch.equal(chain(x), today)


@settings(max_examples=40, deadline=None)
@given(gen=gens, dim=dims, shift=st.floats(-3.0, 3.0), ng=st.integers(1, 3))
def test_alpha_one_ignores_components_orthogonal_to_d(gen, dim, shift, ng):
    p = prompts(gen, dim, ng=ng, nb=2)
    f = GoalBaseline(p, alpha=1.0)
    d = f.goal - f.baseline
    x = frames(gen, dim)
    ortho = torch.randn(x.shape, generator=gen, dtype=F64)
    ortho -= (ortho @ d)[:, None] / (d @ d) * d  # any embedding component orthogonal to d
    torch.testing.assert_close(f(x + shift * ortho), f(x))
    assert not torch.allclose(f(x + 0.3 * d), f(x))  # ... while moving along d matters


@settings(max_examples=40, deadline=None)
@given(gen=gens, dim=dims, ng=st.integers(1, 4))
def test_alpha_zero_is_cosine_similarity_up_to_an_affine_map(gen, dim, ng):
    p = prompts(gen, dim, ng=ng, nb=2)
    x = frames(gen, dim)
    r = GoalBaseline(p, alpha=0.0)(x)
    g = p.goal.mean(0)  # the unrenormalised mean the paper uses
    torch.testing.assert_close(r, x @ g + 0.5 * (1 - g @ g))
    # i.e. slope ||g|| > 0 times the cosine with the goal direction, plus a constant
    torch.testing.assert_close(r, g.norm() * cos_to_set(x, p.goal) + 0.5 * (1 - g @ g))
    if ng == 1:
        torch.testing.assert_close(r, x @ p.goal[0])


@settings(max_examples=40, deadline=None)
@given(gen=gens, dim=dims)
def test_alpha_one_is_a_function_of_the_contrastive_score(gen, dim):
    # One prompt per set: x . d is then exactly the contrastive score c(x) = s_g - s_b.
    p = prompts(gen, dim)
    x = frames(gen, dim)
    c = Contrastive(p)
    d = p.goal[0] - p.baseline[0]
    expected = 1 - 0.5 * (c(x) - c(p.goal)) ** 2 / (d @ d)
    torch.testing.assert_close(GoalBaseline(p, alpha=1.0)(x), expected)


@settings(max_examples=40, deadline=None)
@given(gen=gens, dim=dims, temp=st.floats(1e-3, 10.0), ng=st.integers(1, 3),
       nb=st.integers(1, 3))
def test_softmax_of_two_sets_is_sigmoid_of_similarity_gap(gen, dim, temp, ng, nb):
    p = prompts(gen, dim, ng=ng, nb=nb)
    x = frames(gen, dim)
    gap = cos_to_set(x, p.goal) - cos_to_set(x, p.baseline)
    torch.testing.assert_close(Softmax(p, temp)(x), torch.sigmoid(gap / temp))


@settings(max_examples=40, deadline=None)
@given(gen=gens, dim=dims, temp=st.floats(1e-2, 10.0), nn=st.integers(0, 3))
def test_contrastive_is_temperature_times_softmax_log_odds(gen, dim, temp, nn):
    p = prompts(gen, dim, ng=2, nb=2, nn=nn)
    x = frames(gen, dim)
    log_p = Softmax(p, temp).log_probs(x)
    assert log_p.shape[1] == (3 if nn else 2)
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(len(x), dtype=F64))
    # Goal vs the last class (negatives, else baseline) is what contrastive compares.
    torch.testing.assert_close(temp * (log_p[:, 0] - log_p[:, -1]), Contrastive(p)(x))


def test_contrastive_uses_negatives_else_falls_back_to_baseline():
    gen = torch.Generator().manual_seed(0)
    x = frames(gen, 16)
    without = prompts(gen, 16, ng=2, nb=3)
    with_neg = PromptEmbeddings(without.goal, without.baseline, unit(torch.randn(2, 16, dtype=F64)))
    torch.testing.assert_close(Contrastive(without)(x),
                               cos_to_set(x, without.goal) - cos_to_set(x, without.baseline))
    torch.testing.assert_close(Contrastive(with_neg)(x),
                               cos_to_set(x, with_neg.goal) - cos_to_set(x, with_neg.negative))
    assert "against=negative" in repr(Contrastive(with_neg))


EMBEDDING_SPECS = [
    {"name": "goal_baseline", "alpha": 0.0}, {"name": "goal_baseline", "alpha": 0.7},
    {"name": "softmax", "temperature": 0.05}, {"name": "contrastive"},
]


@settings(max_examples=40, deadline=None)
@given(gen=gens, formula=st.sampled_from(EMBEDDING_SPECS), q=st.floats(0.0, 1.0),
       above=st.floats(-5, 5), below=st.floats(-5, 5))
def test_threshold_of_any_formula_is_binary(gen, formula, q, above, below):
    p = prompts(gen, 12, nn=1)
    x = frames(gen, 12, n=20)
    raw = build_reward_fn([formula], p)(x)
    value = float(torch.quantile(raw, q))  # a threshold inside the rewards' range
    out = build_reward_fn([formula, {"name": "threshold", "value": value, "above": above,
                                     "below": below}], p)(x)
    assert out.dtype == F64
    expected = torch.where(raw >= value, torch.tensor(above, dtype=F64),
                           torch.tensor(below, dtype=F64))
    assert torch.equal(out, expected)
    assert set(out.tolist()) <= {above, below}


def test_threshold_of_integer_rewards_returns_float():
    out = Threshold(2)(torch.tensor([1, 2, 3]))
    assert out.dtype == torch.float32 and out.tolist() == [0.0, 1.0, 1.0]


@settings(max_examples=30, deadline=None)
@given(gen=gens, cuts=st.lists(st.integers(0, 300), max_size=6),
       loc=st.floats(-100, 100), scale=st.floats(1e-2, 1e2))
def test_running_norm_merges_batches_exactly_as_one_batch(gen, cuts, loc, scale):
    stream = loc + scale * torch.randn(300, generator=gen, dtype=F64)
    chunked, whole = RunningNorm(), RunningNorm()
    for chunk in torch.tensor_split(stream, sorted(cuts)):  # some chunks may be empty
        chunked(chunk)
    whole(stream)
    assert chunked.count.item() == whole.count.item() == 300
    torch.testing.assert_close(chunked.mean, stream.mean(), rtol=1e-12, atol=1e-12 * scale)
    torch.testing.assert_close(chunked.var, stream.var(correction=0), rtol=1e-10, atol=0)
    # Another rank's statistics fold in the same way (what DDP would all-gather).
    left, right = RunningNorm(), RunningNorm()
    left(stream[:120]), right(stream[120:])
    left.merge_(right.count, right.mean, right.m2)
    torch.testing.assert_close(left.var, whole.var, rtol=1e-10, atol=0)
    assert left.count.item() == 300


def test_running_norm_gives_zero_mean_unit_std_on_a_stream():
    gen = torch.Generator().manual_seed(1)
    stream = 5.0 + 3.0 * torch.randn(1000, generator=gen, dtype=F64)
    norm = RunningNorm()
    first = norm(stream[:50])  # update, then normalise: the first batch by its own stats
    torch.testing.assert_close(first.mean(), torch.zeros((), dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(first.std(correction=0), torch.ones((), dtype=F64))
    for chunk in stream[50:].split(64):
        norm(chunk)
    norm.eval()
    out = norm(stream)
    assert norm.count.item() == 1000  # eval mode did not update
    torch.testing.assert_close(out.mean(), torch.zeros((), dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.std(correction=0), torch.ones((), dtype=F64))


def test_running_norm_is_identity_before_any_update_and_clips():
    r = torch.tensor([-3.0, 0.5, 4.0])
    assert torch.equal(RunningNorm().eval()(r), r)
    assert RunningNorm(clip=1.0).eval()(r).tolist() == [-1.0, 0.5, 1.0]
    out = RunningNorm(clip=0.5)(torch.tensor([0.0, 10.0]))  # normalised to -1, 1
    assert out.tolist() == [-0.5, 0.5] and out.dtype == torch.float32


def test_state_dict_round_trip_resumes_running_statistics():
    gen = torch.Generator().manual_seed(2)
    p = prompts(gen, 8, dtype=torch.float32)
    spec = [{"name": "goal_baseline", "alpha": 0.5}, {"name": "running_norm", "clip": 5.0}]
    chain = build_reward_fn(spec, p)
    with torch.inference_mode():  # how the reward model calls it
        for _ in range(3):
            chain(frames(gen, 8, n=16, dtype=torch.float32))
    state = chain.state_dict()
    assert sorted(state) == ["1.count", "1.m2", "1.mean"]  # prompts are rebuilt from config
    assert not any(t.is_inference() for t in state.values())
    resumed = build_reward_fn(spec, p)
    resumed.load_state_dict(state)
    x = frames(gen, 8, n=5, dtype=torch.float32)
    assert torch.equal(resumed.eval()(x), chain.eval()(x))
    chain.train()(x), resumed.train()(x)  # ... and they keep updating identically
    assert all(torch.equal(a, b) for a, b in zip(chain.state_dict().values(),
                                                 resumed.state_dict().values(), strict=True))


def test_prompt_buffers_follow_to_and_half_inputs_get_float32_math():
    gen = torch.Generator().manual_seed(3)
    p = prompts(gen, 8, nn=1, dtype=torch.float32)
    for name in ("goal_baseline", "softmax", "contrastive"):
        f = build_reward_fn([name], p)
        assert {b.dtype for b in f.buffers()} == {torch.float32}
        out = f(frames(gen, 8, dtype=torch.float32).half())
        assert out.dtype == torch.float32 and out.shape == (6,)
        assert f(frames(gen, 8, dtype=torch.float32).view(2, 3, 8)).shape == (2, 3)
        assert {b.dtype for b in f.to(F64).buffers()} == {F64}


def test_prompt_embeddings_validate_shapes():
    g = unit(torch.randn(2, 8))
    with pytest.raises(ValueError, match="baseline embeddings have shape"):
        PromptEmbeddings(g, unit(torch.randn(1, 7)), g[:0])
    with pytest.raises(ValueError, match="at least one"):
        PromptEmbeddings(g, g[:0], g[:0])
    with pytest.raises(ValueError, match="from_raw"):
        PromptEmbeddings(g, 2 * g, g[:0])
    p = PromptEmbeddings.from_raw(3 * g, g)
    torch.testing.assert_close(p.goal, g)
    assert p.negative.shape == (0, 8) and not p.has_negative


def test_every_registered_formula_builds_a_module_of_its_kind():
    p = prompts(torch.Generator().manual_seed(3), 8)
    x = frames(torch.Generator().manual_seed(5), 8)
    for name, info in FORMULAS.items():
        if info.kind == MIX:  # no module: the Scorer adds its terms (tests/reward/test_mix.py)
            chain = build_reward_fn(["contrastive", {"name": name, "terms": {"gt_reward": 1}}], p)
            assert [type(m) for m in chain] == [Contrastive], name
            continue
        params = {k: 0.5 for k, param in info.params.items() if param.default is REQUIRED}
        if info.kind == JUDGE:  # answer log-probabilities [B, C] -> rewards [B]
            module = info.factory()(**params)
            log_p = torch.log_softmax(torch.randn(6, len(module.answers), dtype=x.dtype), -1)
            assert isinstance(module, torch.nn.Module) and module(log_p).shape == (6,), name
            continue
        module = build_reward_fn([{"name": name, **params}] if info.kind == EMBEDDING
                                 else ["contrastive", {"name": name, **params}], p)[-1]
        assert isinstance(module, torch.nn.Module) and module(
            x if info.kind == EMBEDDING else x[:, 0]).shape == (6,), name
    chain = build_reward_fn(["softmax", {"name": "threshold", "value": 0.5}, "running_norm"],
                            prompts(torch.Generator().manual_seed(4), 8))
    assert [type(m) for m in chain] == [Softmax, Threshold, RunningNorm]
