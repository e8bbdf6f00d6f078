"""End-to-end acceptance runs (minutes each). Marked slow; CI runs them too."""

import time
from pathlib import Path

import pytest

from tests.helpers import CONFIGS, fit_run, scalars

pytestmark = pytest.mark.slow


def fit(tmp_path: Path, config: str, *overrides: str) -> Path:
    return fit_run(tmp_path, config, *overrides, name="run")


def test_sac_learns_cartpole_from_ground_truth_reward(tmp_path):
    """The SAC loop learns: greedy evaluation return rises from random (~20) to >= 150."""
    run = fit(tmp_path, "cartpole.yaml", "reward.backend=ground_truth",
              "agent.total_env_steps=30000")
    evals = scalars(run)["eval/gt_return"]
    print("eval/gt_return by env step:", [(s, round(v, 1)) for s, v in evals])
    assert evals[0][0] <= 5000 and evals[-1][0] == 30000
    # The last evaluations, 5 greedy episodes each, average >= 150 (random policy: ~20).
    last = [v for _, v in evals[-2:]]
    assert sum(last) / len(last) >= 150, evals


@pytest.mark.parametrize("config, overrides", [
    ("cartpole.yaml", ["agent.total_env_steps=2000"]),
    ("humanoid_lotus.yaml", ["reward.model=ViT-B-32/laion2b_s34b_b79k", "env.num_envs=2",
                             "env.parallel=false",
                             "agent.total_env_steps=300", "agent.learning_starts=100"]),
], ids=["cartpole", "humanoid"])
def test_issue_acceptance_commands_with_random_vit_b_32(tmp_path, config, overrides):
    """The README's smoke commands: a real ViT-B-32 architecture with random weights."""
    run = fit(tmp_path, config, "reward.pretrained=false", *overrides)
    tags = scalars(run)
    assert "train/episode_vlm_return" in tags and "train/episode_gt_return" in tags
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "config.yaml").is_file()


def random_policy_success_rate(episodes: int = 10) -> float:
    """Fraction of upright steps under uniformly random actions on the quickstart's CartPole."""
    from vlmrm.config import load_config
    from vlmrm.envs.factory import make_base_env

    env = make_base_env(load_config(CONFIGS / "quickstart.yaml").env, None, from_pixels=False,
                        seed=123)
    rates = [env.rollout(1000)["next", "is_success"].float().mean().item()
             for _ in range(episodes)]
    env.close()
    return sum(rates) / len(rates)


@pytest.mark.parametrize("seed", [0, 1])
def test_quickstart_learns_cartpole_from_the_demo_vlm_reward(tmp_path, seed):
    """`vlmrm fit --config configs/quickstart.yaml`: VLM reward only, success rate >= 0.8."""
    start = time.perf_counter()
    run = fit(tmp_path, "quickstart.yaml", f"seed={seed}")
    minutes = (time.perf_counter() - start) / 60
    tags = scalars(run)
    success = tags["eval/success_rate"]
    baseline = random_policy_success_rate()
    print(f"seed {seed}: {minutes:.1f} min; random policy success {baseline:.2f}; "
          f"eval/success_rate by env step: {[(s, round(v, 2)) for s, v in success]}")
    # Trained on the VLM reward: its returns differ from the env's upright-step count.
    vlm, gt = dict(tags["train/episode_vlm_return"]), dict(tags["train/episode_gt_return"])
    assert any(abs(vlm[s] - gt[s]) > 1 for s in gt)
    assert baseline < 0.4
    last = [v for _, v in success[-2:]]
    assert sum(last) / len(last) >= 0.8, success
    # The reward-hacking monitor watched the whole run and stayed silent, and the demo reward
    # agreed with the ground truth step by step (it falls late in the run, when nearly every
    # step is upright and the ground truth is almost constant).
    flags = tags["monitor/hacking_suspected"]
    rho = sorted(v for _, v in tags["monitor/vlm_gt_spearman"])
    print(f"monitor: {len(flags)} checks, vlm_gt_spearman min {rho[0]:.2f}, median "
          f"{rho[len(rho) // 2]:.2f}, max {rho[-1]:.2f}")
    assert len(flags) > 20 and all(v == 0.0 for _, v in flags)
    assert rho[len(rho) // 2] > 0.1


def test_mountaincar_ground_truth_baseline_reaches_and_holds_the_flag(tmp_path):
    """The MountainCar preset learns from the env's own (sparse) reward: the deterministic
    policy reaches the flag and stays there (a random policy never gets there)."""
    run = fit(tmp_path, "mountaincar.yaml", "reward.backend=ground_truth",
              "agent.total_env_steps=25000", "agent.eval_every=2500", "agent.eval_episodes=3")
    success = scalars(run)["eval/success_rate"]
    print("eval/success_rate by env step:", [(s, round(v, 2)) for s, v in success])
    last = [v for _, v in success[-2:]]
    # success_rate is the fraction of the 200 steps spent at the flag: ~0.65 is near optimal.
    assert sum(last) / len(last) >= 0.3, success
