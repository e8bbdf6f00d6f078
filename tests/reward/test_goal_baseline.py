"""Goal-baseline reward: closed form vs the paper's definition, and its special cases."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmrm.reward.formulas import GoalBaseline, PromptEmbeddings, build_reward_fn
from vlmrm.reward.goal_baseline import goal_baseline_reward


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def projection_matrix(goal, baseline, alpha):
    """The paper's explicit P = alpha d d^T / ||d||^2 + (1 - alpha) I, with d = g - b."""
    d = (goal - baseline).unsqueeze(-1)
    eye = torch.eye(goal.shape[-1], dtype=goal.dtype, device=goal.device)
    return alpha * (d @ d.T) / (d.T @ d).clamp_min(1e-12) + (1 - alpha) * eye


def paper_reward(x, g, b, alpha):
    """r(x) = 1 - 1/2 ||(x - g) P||^2 written literally with the explicit matrix P."""
    p = projection_matrix(g, b, alpha)
    return 1 - 0.5 * ((x - g) @ p).square().sum(-1)


vectors = st.integers(min_value=0, max_value=2**31 - 1).map(
    lambda seed: torch.Generator().manual_seed(seed))


@settings(max_examples=60, deadline=None)
@given(gen=vectors, alpha=st.floats(0.0, 1.0), dim=st.integers(2, 64))
def test_closed_form_matches_paper_definition(gen, alpha, dim):
    x = unit(torch.randn(7, dim, generator=gen, dtype=torch.float64))
    g, b = unit(torch.randn(2, dim, generator=gen, dtype=torch.float64))
    torch.testing.assert_close(goal_baseline_reward(x, g, b, alpha), paper_reward(x, g, b, alpha))


@settings(max_examples=40, deadline=None)
@given(gen=vectors, dim=st.integers(2, 64))
def test_alpha_zero_single_prompt_is_cosine_similarity(gen, dim):
    x = unit(torch.randn(5, dim, generator=gen, dtype=torch.float64))
    g, b = unit(torch.randn(2, dim, generator=gen, dtype=torch.float64))
    torch.testing.assert_close(goal_baseline_reward(x, g, b, 0.0), x @ g)


@settings(max_examples=40, deadline=None)
@given(gen=vectors, dim=st.integers(3, 64), shift=st.floats(-2.0, 2.0))
def test_alpha_one_depends_only_on_component_along_d(gen, dim, shift):
    x = unit(torch.randn(4, dim, generator=gen, dtype=torch.float64))
    g, b = unit(torch.randn(2, dim, generator=gen, dtype=torch.float64))
    d = g - b
    # Move x orthogonally to d: the alpha=1 reward must not change.
    ortho = torch.randn(dim, generator=gen, dtype=torch.float64)
    ortho -= (ortho @ d) / (d @ d) * d
    moved = x + shift * ortho
    torch.testing.assert_close(goal_baseline_reward(moved, g, b, 1.0),
                               goal_baseline_reward(x, g, b, 1.0))
    # ... and moving along d does change it.
    along = x + 0.3 * d
    assert not torch.allclose(goal_baseline_reward(along, g, b, 1.0),
                              goal_baseline_reward(x, g, b, 1.0))


@settings(max_examples=30, deadline=None)
@given(gen=vectors, alpha=st.floats(0.0, 1.0))
def test_reward_is_highest_at_the_goal_and_at_most_one(gen, alpha):
    x = unit(torch.randn(16, 8, generator=gen, dtype=torch.float64))
    g, b = unit(torch.randn(2, 8, generator=gen, dtype=torch.float64))
    r = goal_baseline_reward(x, g, b, alpha)
    assert torch.all(r <= 1 + 1e-12)
    assert goal_baseline_reward(g[None], g, b, alpha).item() == 1.0


def test_several_prompts_average_their_normalised_embeddings():
    emb = torch.tensor([[3.0, 0.0], [0.0, 0.5]])  # norms 3 and 0.5: normalised before averaging
    b = torch.tensor([[1.0, 0.0]])
    formula = GoalBaseline(PromptEmbeddings.from_raw(emb, b), alpha=0.0)
    torch.testing.assert_close(formula.goal, torch.tensor([0.5, 0.5]))
    x = unit(torch.randn(6, 2, generator=torch.Generator().manual_seed(0)))
    # alpha=0, several prompts: r = 1 - 1/2||x - g||^2 with g the mean normalised embedding.
    torch.testing.assert_close(formula(x), 1 - 0.5 * (x - formula.goal).square().sum(-1))


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_the_formula_refuses_alpha_outside_the_unit_interval(bad):
    gen = torch.Generator().manual_seed(0)
    p = PromptEmbeddings.from_raw(torch.randn(1, 16, generator=gen), torch.randn(1, 16, generator=gen))
    with pytest.raises(ValueError, match=rf"alpha={bad} must be in \[0, 1\] \(goal_baseline\)"):
        build_reward_fn([{"name": "goal_baseline", "alpha": bad}], p)

