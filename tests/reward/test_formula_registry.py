"""One registration makes a formula: the config checks, `vlmrm fit --help`, the reward model
and `evaluate-reward` all read it. And reward.alpha is the goal_baseline shorthand, resolved
into reward.transform when a config loads."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import yaml

from tests.helpers import CONFIGS, ROOT
from vlmrm.cli import main
from vlmrm.config import load_config
from vlmrm.config.load import to_yaml
from vlmrm.errors import ConfigError
from vlmrm.reward.spec import (
    EMBEDDING,
    FORMULAS,
    SCALAR,
    Param,
    register_formula,
    resolve_transform,
)
from vlmrm.run.resume import check_changes

QUICKSTART = CONFIGS / "quickstart.yaml"  # the bundled demo model: loads in a second


class Affine(torch.nn.Module):
    """``scale * r + shift``: a toy scalar transform, registered by the tests below."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.scale * r + self.shift


@pytest.fixture
def affine():
    """``affine`` registered for one test: the registry is restored afterwards."""
    saved = dict(FORMULAS)
    register_formula(
        "affine", SCALAR, "scale * reward + shift (a test's formula)", Affine,
        {"scale": Param(1.0, "a finite non-zero number", lambda v: math.isfinite(v) and v != 0),
         "shift": Param(0.0, "a finite number", math.isfinite)})
    yield
    FORMULAS.clear()
    FORMULAS.update(saved)


def test_a_registered_formula_is_listed_by_fit_help(affine, capsys):
    with pytest.raises(SystemExit) as done:
        main(["fit", "--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    assert ("    affine(scale=1, shift=0)  -- scale * reward + shift (a test's formula); "
            "scale: a finite non-zero number; shift: a finite number") in help_text
    # ... among the built-ins, after the scalar transforms' heading.
    assert help_text.index("goal_baseline(alpha=0)") < help_text.index(
        "scalar transforms (any number after it):") < help_text.index("affine(")


def test_a_registered_formula_is_scored_by_evaluate_reward(affine, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate-reward", "--config", str(QUICKSTART), "--out", str(out),
                 "--alphas", "0", "--backends", "open_clip:vlmrm-demo",
                 "reward.transform=[goal_baseline, {name: affine, scale: -2, shift: 1}]"]) == 0
    results = json.loads((out / "summary.json").read_text())["landscape"]["results"]
    plain, negated = results
    assert plain["formula"] == "goal_baseline" and plain["alpha"] == 0.0
    assert negated["formula"] == "goal_baseline(alpha=0) > affine(scale=-2, shift=1)"
    # A decreasing affine map of the same rewards ranks the frames exactly the other way.
    assert negated["spearman"] == pytest.approx(-plain["spearman"], abs=1e-9)
    assert negated["roc_auc"] == pytest.approx(1 - plain["roc_auc"], abs=1e-9)
    rows = (out / "landscape.csv").read_text().splitlines()
    assert any("affine(scale=-2, shift=1)" in row for row in rows)


def test_a_registered_formula_s_parameters_are_checked_with_the_config(affine, tmp_path,
                                                                          capsys):
    code = main(["fit", "--config", str(QUICKSTART), f"logging.output_dir={tmp_path}/runs",
                 "reward.transform=[contrastive, {name: affine, scale: 0}]"])
    err = capsys.readouterr().err
    assert code == 2 and "reward.transform[1].scale=0 must be a finite non-zero number" in err
    assert not (tmp_path / "runs").exists()


def test_a_registered_formula_reaches_the_reward_model(affine):
    from vlmrm.run.build import make_reward_model

    cfg = load_config(QUICKSTART, ["reward.transform=[contrastive, {name: affine, scale: 3}]"])
    model = make_reward_model(cfg, "cpu")
    frames = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    contrastive, scaled = model.formula
    assert isinstance(scaled, Affine) and scaled.scale == 3.0
    embeddings = model.backend.encode_images(frames)
    torch.testing.assert_close(model(frames), 3 * contrastive(embeddings))


@pytest.mark.parametrize("args, message", [
    (("goal_baseline", EMBEDDING, "again", Affine), "'goal_baseline' is already registered"),
    (("my-formula", SCALAR, "x", Affine), "must be a Python identifier"),
    (("mine", "vector", "x", Affine), "kind='vector' must be one of"),
    (("mine", SCALAR, "two\nlines", Affine), "one non-empty line"),
    (("mine", SCALAR, "x", "no_colon"), "'package.module:attr'"),
    (("mine", SCALAR, "x", Affine, {"name": Param(1.0, "any", math.isfinite)}),
     "parameter 'name' must be"),
    (("mine", SCALAR, "x", Affine, {"scale": 1.0}), "parameter 'scale' must be"),
])
def test_a_bad_registration_is_refused_and_registers_nothing(args, message):
    before = dict(FORMULAS)
    with pytest.raises(ValueError, match="register_formula") as err:
        register_formula(*args)
    assert message in str(err.value) and FORMULAS == before


def test_a_formula_registered_by_module_path_is_imported_when_built():
    saved = dict(FORMULAS)
    try:
        info = register_formula("affine_by_path", SCALAR, "as affine",
                                f"{__name__}:Affine",
                                {"scale": Param(1.0, "finite", math.isfinite),
                                 "shift": Param(0.0, "finite", math.isfinite)})
        assert info.factory() is Affine
    finally:
        FORMULAS.clear()
        FORMULAS.update(saved)


@pytest.mark.parametrize("alpha, transform, resolved", [
    (0.25, None, [{"name": "goal_baseline", "alpha": 0.25}]),
    (0.0, ["softmax"], [{"name": "softmax", "temperature": 0.01}]),  # 0: alpha not set
    (0.5, [{"name": "goal_baseline", "alpha": 0.5}, "running_norm"],  # they agree
     [{"name": "goal_baseline", "alpha": 0.5},
      {"name": "running_norm", "eps": 1e-8, "clip": None}]),
])
def test_alpha_resolves_into_the_transform(alpha, transform, resolved):
    assert resolve_transform(alpha, transform) == resolved


@pytest.mark.parametrize("overrides, message", [
    (["reward.alpha=0.5", "reward.transform=[softmax]"],
     "reward.alpha=0.5 and reward.transform are both set and disagree"),
    (["reward.alpha=0.5", "reward.transform=[{name: goal_baseline, alpha: 0.25}]"],
     "the transform starts with goal_baseline(alpha=0.25)"),
    (["reward.alpha=1.5"], "reward.alpha=1.5 must be in [0, 1] (goal_baseline)."),
])
def test_alpha_against_the_transform_is_one_error(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(QUICKSTART, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("override, chain", [
    ("reward.alpha=0.5", [{"name": "goal_baseline", "alpha": 0.5}]),
    ("reward.transform=[softmax, {name: threshold, value: 0.5}, running_norm]",
     [{"name": "softmax", "temperature": 0.01},
      {"name": "threshold", "value": 0.5, "above": 1.0, "below": 0.0},
      {"name": "running_norm", "eps": 1e-8, "clip": None}]),
])
def test_a_loaded_config_holds_the_chain_and_reloads_as_itself(override, chain, tmp_path):
    cfg = load_config(QUICKSTART, [override])
    assert cfg.reward.transform == chain
    saved = tmp_path / "config.yaml"  # what a run directory keeps, and resume reads
    saved.write_text(to_yaml(cfg))
    again = load_config(saved)
    assert again == cfg
    check_changes(again, cfg)


def test_a_config_saved_before_resolution_resumes_unchanged():
    """Run directories written before reward.alpha was resolved hold transform: null."""
    old = yaml.safe_load(to_yaml(load_config(QUICKSTART, ["reward.alpha=0.5"])))
    old["reward"]["transform"] = None
    resumed = load_config(None, base=old)
    check_changes(resumed, load_config(QUICKSTART, ["reward.alpha=0.5"]))
    assert resumed.reward.transform == [{"name": "goal_baseline", "alpha": 0.5}]


def test_the_documented_example_registers_a_formula_for_the_command_line(tmp_path):
    """docs/snippets/own_formula.py, included in docs/reward-models.md: with its formula
    registered, `fit --help` lists it and evaluate-reward scores it."""
    example = [sys.executable, str(ROOT / "docs" / "snippets" / "own_formula.py")]
    listed = subprocess.run([*example, "fit", "--help"], capture_output=True, text=True,
                            check=True, timeout=300).stdout
    assert ("goal_cosine(scale=1)  -- scale x cosine with the goal prompts' mean direction; "
            "scale: a finite number > 0") in listed
    out = tmp_path / "eval"
    subprocess.run([*example, "evaluate-reward", "--config", str(QUICKSTART), "--out",
                    str(out), "--alphas", "0", "--backends", "open_clip:vlmrm-demo",
                    "reward.transform=[{name: goal_cosine, scale: 2}]"],
                   capture_output=True, text=True, check=True, timeout=600)
    plain, cosine = json.loads((out / "summary.json").read_text())["landscape"]["results"]
    assert cosine["formula"] == "goal_cosine(scale=2)"
    # At alpha 0 the goal-baseline reward is affine in the same cosine: the same ranking.
    assert cosine["spearman"] == pytest.approx(plain["spearman"], abs=1e-6)
    assert cosine["roc_auc"] == pytest.approx(plain["roc_auc"], abs=1e-6)
