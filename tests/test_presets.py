"""The presets reproduce the original code's regime: every humanoid config holds the values
of the humanoid table in docs/presets.md ("Presets against the original code"), and that
page's compute figures follow from the configs."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from tests.helpers import CONFIGS, ROOT
from vlmrm.config import load_config
from vlmrm.run.plan import plan_run

HUMANOID = sorted(CONFIGS.glob("humanoid_*.yaml"))
TABLE_HEADER = "| setting | original humanoid run | humanoid presets | same? |"
PRESETS_PAGE = ROOT / "docs" / "presets.md"


def readme_regime() -> dict[str, object]:
    """``config key -> value`` from the docs' humanoid preset table."""
    text = PRESETS_PAGE.read_text()
    rows = text[text.index(TABLE_HEADER):].split("\n\n", 1)[0].splitlines()[2:]
    regime = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        key, value = re.fullmatch(r"`(.+)`", cells[0]), re.match(r"`(.+?)`", cells[2])
        if key and value:
            regime[key.group(1)] = OmegaConf.create(f"v: {value.group(1)}").v  # YAML scalars
    return regime


def get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def test_the_docs_table_covers_the_regime_the_issue_names():
    regime = readme_regime()
    for key in ("env.num_envs", "agent.train_freq", "agent.batch_size", "reward.batch_size",
                "agent.activation", "agent.critic_loss", "env.episode_end", "reward.resize",
                "agent.learning_starts", "agent.gradient_steps", "reward.model"):
        assert key in regime, key
    assert regime["env.num_envs"] == 32 and regime["agent.batch_size"] == 512


@pytest.mark.parametrize("path", HUMANOID, ids=[p.stem for p in HUMANOID])
def test_humanoid_preset_matches_the_docs_table(path):
    cfg = load_config(path)
    for key, value in readme_regime().items():
        ours = get(cfg, key)
        assert (list(ours) if isinstance(ours, list) else ours) == value, key
    assert "# paper:" in path.read_text()  # the header says where each value comes from


def test_docs_compute_figures_follow_from_the_presets():
    text = PRESETS_PAGE.read_text()
    for path in HUMANOID:
        plan = plan_run(load_config(path))
        assert f"{plan.iterations:,} iterations" in text
        assert f"{plan.updates:,} SAC updates" in text
        assert f"{plan.frames_to_score:,} frames rendered and scored" in text
