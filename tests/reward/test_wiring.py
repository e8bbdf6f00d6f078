"""reward.transform and reward.negative_prompts: config -> reward model, and bad specs."""

import pytest
import torch

from tests.helpers import CONFIGS
from vlmrm.cli import main
from vlmrm.config import load_config
from vlmrm.reward.formulas import GoalBaseline, PromptEmbeddings, RunningNorm, Softmax, Threshold
from vlmrm.reward.goal_baseline import goal_baseline_reward
from vlmrm.run.build import make_reward_model

QUICKSTART = CONFIGS / "quickstart.yaml"  # the bundled demo model: loads in a second


def mean_of_unit_rows(e: torch.Tensor) -> torch.Tensor:
    """The paper's prompt-set embedding: the mean of the L2-normalised prompt embeddings."""
    return (e / e.norm(dim=-1, keepdim=True)).mean(dim=0)


def frames(n: int = 6) -> torch.Tensor:
    return torch.randint(0, 256, (n, 96, 96, 3), generator=torch.Generator().manual_seed(0),
                         dtype=torch.uint8)


def test_default_transform_is_the_goal_baseline_reward_with_alpha():
    cfg = load_config(QUICKSTART, ["reward.alpha=0.25"])
    model = make_reward_model(cfg, "cpu")
    assert [type(m) for m in model.formula] == [GoalBaseline] and model.formula[0].alpha == 0.25
    b = model.backend
    expected = goal_baseline_reward(b.encode_images(frames()),
                                    mean_of_unit_rows(b.encode_text(cfg.reward.goal_prompts)),
                                    mean_of_unit_rows(b.encode_text(cfg.reward.baseline_prompts)),
                                    0.25)
    assert torch.equal(model(frames()), expected)


def test_configured_chain_with_negative_prompts_reaches_the_model():
    cfg = load_config(QUICKSTART, [
        "reward.transform=[{name: softmax, temperature: 0.05}, {name: threshold, value: 0.4}]",
        "reward.negative_prompts=[pole fallen over]"])
    model = make_reward_model(cfg, "cpu")
    softmax, threshold = model.formula
    assert isinstance(softmax, Softmax) and isinstance(threshold, Threshold)
    assert softmax.temperature == 0.05 and softmax.directions.shape[0] == 3  # + negatives
    b = model.backend
    prompts = PromptEmbeddings.from_raw(b.encode_text(cfg.reward.goal_prompts),
                                        b.encode_text(cfg.reward.baseline_prompts),
                                        b.encode_text(["pole fallen over"]))
    p_goal = Softmax(prompts, 0.05)(b.encode_images(frames()))
    rewards = model(frames())
    assert torch.equal(rewards, (p_goal >= 0.4).float())


def test_running_norm_statistics_move_only_when_asked():
    cfg = load_config(QUICKSTART, ["reward.transform=[goal_baseline, running_norm]"])
    model = make_reward_model(cfg, "cpu")
    norm = model.formula[1]
    assert isinstance(norm, RunningNorm)
    model(frames())  # a fresh model (play, render, evaluate-reward): identity, no update
    assert norm.count == 0
    model.update_stats = True  # what the training pipeline sets
    trained = model(frames())
    assert norm.count == 6 and not model.formula.training
    assert trained.mean().abs() < 1e-5  # normalised by its own batch
    with model.frozen():  # evaluation episodes and videos
        frozen = model(frames())
    assert norm.count == 6 and torch.allclose(frozen, trained)
    model(frames())
    assert norm.count == 12


@pytest.mark.parametrize("override, expected", [
    ("reward.transform=[{name: softmx}]", "unknown formula 'softmx' (did you mean 'softmax'?)"),
    ("reward.transform=[running_norm]", "reward.transform[0]: 'running_norm' is a scalar"),
    ("reward.transform=[{name: softmax, temperature: 0}]", "temperature=0 must be"),
    ("reward.transform=[goal_baseline, softmax]", "reward.transform[1]: 'softmax' is an"),
    ("reward.transform=[{name: threshold}]", "reward.transform[0]"),
    ("reward.transform=[]", "reward.transform must be a non-empty list"),
    ("reward.negative_prompts=['']", "reward.negative_prompts"),
])
def test_bad_transform_exits_2_naming_the_item(override, expected, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["fit", "--config", str(QUICKSTART), f"logging.output_dir={out}", override])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert err.startswith("vlmrm: error: ") and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_alpha_and_transform_together_are_refused_with_the_fix(tmp_path, capsys):
    code = main(["fit", "--config", str(QUICKSTART), f"logging.output_dir={tmp_path}/r",
                 "reward.alpha=0.5", "reward.transform=[softmax]"])
    err = capsys.readouterr().err
    assert code == 2
    assert "reward.alpha=0.5 and reward.transform are both set" in err
    assert "{name: goal_baseline, alpha: 0.5}" in err  # the fix, spelled out
