"""Every config in configs/ validates and trains for 200 env steps with a tiny model."""

from __future__ import annotations

import pytest

from tests.helpers import CONFIGS as CONFIG_DIR
from vlmrm.cli import main
from vlmrm.config import load_config

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
HUMANOID_TASKS = {"kneeling", "lotus", "standing_up", "arms_raised", "splits", "hands_on_hips",
                  "one_leg", "arms_crossed"}
SMALL = ["env.num_envs=1", "env.parallel=false", "agent.total_env_steps=200", "agent.learning_starts=100", "agent.buffer_size=1000",
         "agent.batch_size=16", "agent.hidden_sizes=[16,16]", "agent.eval_every=0",
         "agent.gradient_steps=4", "logging.video_every=0", "logging.checkpoint_every=100000",
         "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "reward.precision=32"]


def test_all_eight_humanoid_tasks_have_a_config():
    names = {p.stem.removeprefix("humanoid_") for p in CONFIGS if p.stem.startswith("humanoid_")}
    assert names == HUMANOID_TASKS


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validates_and_runs_200_env_steps(path, tiny_openclip, tmp_path):
    cfg = load_config(path)
    if path.stem.startswith("humanoid_"):
        assert cfg.env.id == "vlmrm/Humanoid-v0" and cfg.reward.alpha == 0.0
        assert cfg.reward.model == "ViT-bigG-14/laion2b_s39b_b160k"
        assert cfg.reward.baseline_prompts == ["a humanoid robot"]
        assert not cfg.env.terminate_early and cfg.env.episode_length == 100
    out = tmp_path / "runs"
    code = main(["fit", "--config", str(path), *tiny_openclip.overrides(), *SMALL,
                 f"logging.output_dir={out}", "logging.run_name=smoke"])
    assert code == 0
    assert (out / "smoke" / "checkpoints" / "last.ckpt").is_file()
