"""Every config in configs/ validates and trains for 200 env steps with a tiny model.

The eight humanoid presets differ only in their goal prompt (checked below): each one
validates and builds its reward model with its own prompts, and one of them, standing for
all, trains for the 200 steps (a humanoid run renders MuJoCo on the CPU: ~20 s each).
"""

from __future__ import annotations

import dataclasses

import pytest

from tests.helpers import CONFIGS as CONFIG_DIR
from vlmrm.cli import main
from vlmrm.config import load_config
from vlmrm.run.build import make_reward_model

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
HUMANOID_TASKS = {"kneeling", "lotus", "standing_up", "arms_raised", "splits", "hands_on_hips",
                  "one_leg", "arms_crossed"}
HUMANOIDS = [p for p in CONFIGS if p.stem.startswith("humanoid_")]
#: The humanoid preset that trains; the others differ from it only in the goal prompt.
TRAINED_HUMANOID = "humanoid_lotus"
TRAINED = [p for p in CONFIGS if p not in HUMANOIDS or p.stem == TRAINED_HUMANOID]
SMALL = ["env.num_envs=1", "env.parallel=false", "agent.total_env_steps=200", "agent.learning_starts=100", "agent.buffer_size=1000",
         "agent.batch_size=16", "agent.hidden_sizes=[16,16]", "agent.eval_every=0",
         "agent.gradient_steps=4", "logging.video_every=0", "logging.checkpoint_every=100000",
         "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "reward.precision=32"]


def test_all_eight_humanoid_tasks_have_a_config():
    names = {p.stem.removeprefix("humanoid_") for p in HUMANOIDS}
    assert names == HUMANOID_TASKS


def _check_humanoid(cfg) -> None:
    assert cfg.env.id == "vlmrm/Humanoid-v0" and cfg.reward.alpha == 0.0
    assert cfg.reward.model == "ViT-bigG-14/laion2b_s39b_b160k"
    assert cfg.reward.baseline_prompts == ["a humanoid robot"]
    assert not cfg.env.terminate_early and cfg.env.episode_length == 100


def _without_goal(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    del d["reward"]["goal_prompts"]
    return d


@pytest.mark.parametrize("path", HUMANOIDS, ids=[p.stem for p in HUMANOIDS])
def test_humanoid_preset_differs_from_the_trained_one_only_in_its_goal_and_builds_its_model(
        path, tiny_openclip):
    cfg = load_config(path)
    _check_humanoid(cfg)
    trained = load_config(CONFIG_DIR / f"{TRAINED_HUMANOID}.yaml")
    assert _without_goal(cfg) == _without_goal(trained)
    assert len(cfg.reward.goal_prompts) == 1
    assert (path.stem == TRAINED_HUMANOID) == (cfg.reward.goal_prompts == trained.reward.goal_prompts)
    small = load_config(path, [*tiny_openclip.overrides(), *SMALL])
    model = make_reward_model(small)
    assert model.goal_prompts == cfg.reward.goal_prompts
    assert model.baseline_prompts == ["a humanoid robot"]


@pytest.mark.parametrize("path", TRAINED, ids=[p.stem for p in TRAINED])
def test_config_validates_and_runs_200_env_steps(path, tiny_openclip, tmp_path):
    cfg = load_config(path)
    if path in HUMANOIDS:
        _check_humanoid(cfg)
    out = tmp_path / "runs"
    code = main(["fit", "--config", str(path), *tiny_openclip.overrides(), *SMALL,
                 f"logging.output_dir={out}", "logging.run_name=smoke"])
    assert code == 0
    assert (out / "smoke" / "checkpoints" / "last.ckpt").is_file()
