"""reward.transform specs: defaults, one clear error per bad item, and no torch import."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from vlmrm.reward.spec import TransformItem, default_transform, parse_transform


def test_defaults_are_filled_in_and_shorthand_names_accepted():
    items = parse_transform(["softmax", {"name": "threshold", "value": 1},
                             {"name": "running_norm", "clip": None}])
    assert items == [TransformItem("softmax", {"temperature": 0.01}),
                     TransformItem("threshold", {"value": 1.0, "above": 1.0, "below": 0.0}),
                     TransformItem("running_norm", {"eps": 1e-8, "clip": None})]
    assert parse_transform(items) == items  # parsed items are accepted again
    assert parse_transform(default_transform(0.3)) == [TransformItem("goal_baseline",
                                                                     {"alpha": 0.3})]


def test_omegaconf_lists_and_dicts_are_accepted():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"transform": [{"name": "goal_baseline", "alpha": 1},
                                          {"name": "running_norm", "clip": None}]})
    assert parse_transform(cfg.transform)[1].params == {"eps": 1e-8, "clip": None}


@pytest.mark.parametrize("spec, message", [
    ([], "reward.transform must be a non-empty list"),
    ("goal_baseline", "reward.transform must be a non-empty list"),
    (["goal_baseline", "softmx"],
     "reward.transform[1]: unknown formula 'softmx' (did you mean 'softmax'?); known: "
     "contrastive, goal_baseline, mix, progress, running_norm, softmax, threshold, yes_no."),
    ([{"alpha": 0.5}], "reward.transform[0]: missing 'name'"),
    ([3], "reward.transform[0]: expected a formula name or a mapping"),
    ([{"name": "goal_baseline", "alpah": 0.5}],
     "reward.transform[0] (goal_baseline): unknown parameter 'alpah'; known: alpha."),
    ([{"name": "contrastive", "temperature": 1}], "unknown parameter 'temperature'; known: none"),
    ([{"name": "goal_baseline", "alpha": 1.5}],
     "reward.transform[0].alpha=1.5 must be in [0, 1] (goal_baseline)."),
    ([{"name": "goal_baseline", "alpha": True}], "reward.transform[0].alpha=True must be"),
    ([{"name": "softmax", "temperature": 0}], "reward.transform[0].temperature=0 must be"),
    ([{"name": "softmax", "temperature": "hot"}], "temperature='hot' must be"),
    ([{"name": "softmax", "temperature": None}], "temperature=None must be"),
    (["contrastive", {"name": "threshold"}],
     "reward.transform[1].value is missing: threshold needs value"),
    (["contrastive", {"name": "threshold", "value": float("inf")}], "value=inf must be"),
    (["contrastive", {"name": "running_norm", "clip": -1}], "reward.transform[1].clip=-1"),
    ([{"name": "threshold", "value": 0.5}],
     "reward.transform[0]: 'threshold' is a scalar transform; the chain must start with one "
     "embedding formula (contrastive, goal_baseline, softmax) or, for a judge backend, one "
     "judge formula (progress, yes_no)."),
    (["goal_baseline", "running_norm", "softmax"],
     "reward.transform[2]: 'softmax' is an embedding formula; only the first item may be one"),
])
def test_bad_items_are_named_in_one_message(spec, message):
    with pytest.raises(ValueError) as err:
        parse_transform(spec)
    assert message in str(err.value)


def test_where_prefixes_messages():
    with pytest.raises(ValueError, match=r"^eval\.transform\[0\]: unknown formula"):
        parse_transform(["nope"], where="eval.transform")


def test_importing_vlmrm_reward_spec_imports_no_torch():
    code = "import sys, vlmrm.reward.spec; print({'torch', 'numpy'} & set(sys.modules) or False)"
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": path}).stdout
    assert out.strip() == "False", "importing vlmrm.reward.spec imported torch"
