"""`vlmrm fit` end to end with a generative judge (hf_judge) on a tiny saved model (fast)."""

import torch
from omegaconf import OmegaConf

from tests.backends.fixtures import build_judge
from tests.helpers import fit_run, scalars
from tests.test_train import FAST


def test_cartpole_fit_with_a_judge_reward(tmp_path):
    with torch.no_grad():
        build_judge(tmp_path / "judge", "idefics3")
    run = fit_run(tmp_path, "cartpole.yaml", *FAST, "reward.backend=hf_judge",
                  f"reward.model={tmp_path / 'judge'}", "reward.pretrained=true",
                  "reward.precision=32", "agent.total_env_steps=240",
                  "agent.learning_starts=80", "env.episode_length=40")
    tags = scalars(run)
    assert max(step for step, _ in tags["env_steps"]) == 240
    # The rewards are the judge's log-odds, not CartPole's 1 per step.
    gt, vlm = dict(tags["train/episode_gt_return"]), dict(tags["train/episode_vlm_return"])
    assert any(abs(gt[s] - vlm[s]) > 1e-3 for s in gt)
    saved = OmegaConf.load(run / "config.yaml")
    assert saved.reward.backend == "hf_judge"
    assert OmegaConf.to_container(saved.reward.transform) == [{"name": "yes_no"}]
