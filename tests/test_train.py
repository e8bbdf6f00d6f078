"""`vlmrm fit` end to end on CPU with a tiny open_clip model (fast)."""

import torch
from omegaconf import OmegaConf

from tests.helpers import CONFIGS, QUIET, fit_run, scalars

FAST = ("agent.eval_every=150", "agent.eval_episodes=1", "agent.hidden_sizes=[32,32]",
        "agent.batch_size=32")


def test_cartpole_fit_logs_vlm_and_gt_returns_checkpoints_and_config(tiny_openclip, tmp_path):
    run = fit_run(tmp_path, "cartpole.yaml", *FAST, *tiny_openclip.overrides(),
                  "agent.total_env_steps=400", "agent.learning_starts=100",
                  "logging.checkpoint_every=200", "env.episode_length=50")
    tags = scalars(run)
    for tag in ("train/episode_vlm_return", "train/episode_gt_return", "eval/gt_return",
                "eval/vlm_return", "loss/actor", "loss/critic", "loss/alpha", "train/alpha",
                "perf/env_steps_per_s", "perf/vlm_frames_per_s"):
        assert tag in tags, f"missing {tag}; have {sorted(tags)}"
    # VLM returns come from the reward model, not the env: CartPole pays exactly 1 per step.
    gt, vlm = dict(tags["train/episode_gt_return"]), dict(tags["train/episode_vlm_return"])
    assert any(abs(gt[s] - vlm[s]) > 1e-3 for s in gt)
    assert max(step for step, _ in tags["env_steps"]) == 400
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "last.ckpt", "step-200.ckpt", "step-200.data-r0", "step-400.ckpt", "step-400.data-r0"]
    saved = OmegaConf.load(run / "config.yaml")
    assert saved.agent.total_env_steps == 400 and saved.reward.model == tiny_openclip.reference
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["vlmrm"]["env_steps"] == 400
    assert any(k.startswith("actor.") for k in ckpt["state_dict"])


def test_fit_ends_with_where_the_run_went_and_what_to_run_next(tmp_path, capsys):
    run = fit_run(tmp_path, "cartpole.yaml", *FAST, "reward.backend=ground_truth",
                  "agent.total_env_steps=160", "agent.learning_starts=64", "env.episode_length=40")
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[-4] == f"vlmrm: run finished after 160 env steps: {run}"
    assert out[-3].startswith("  last evaluation: ") and "gt_return" in out[-3]
    assert out[-2] == (f"  watch the agent: vlmrm play --checkpoint "
                       f"{run / 'checkpoints' / 'last.ckpt'} --out episode.mp4")
    assert out[-1] == f"  see the curves:  tensorboard --logdir {run}"
    # Third-party chatter that is not about the user's run stays out of the terminal.
    for noise in ("litlogger", "LazyTensorStorage", "LeafSpec", "max_epochs=1"):
        assert noise not in captured.out + captured.err, noise


def test_replay_buffer_holds_vlm_rewards_not_pixels(tiny_openclip, tmp_path):
    from vlmrm.config import load_config
    from vlmrm.run.build import attach_data, make_module, make_reward_model, make_trainer

    cfg = load_config(CONFIGS / "cartpole.yaml", [
        *QUIET, *FAST, *tiny_openclip.overrides(), "agent.total_env_steps=120",
        "agent.learning_starts=64", "agent.eval_every=0", f"logging.output_dir={tmp_path}"])
    module, trainer = make_module(cfg), make_trainer(cfg, tmp_path / "run")
    attach_data(module, make_reward_model(cfg), trainer)
    trainer.fit(module)
    stored = module.data.replay_buffer[:]
    assert len(stored) == 120
    assert not any("pixels" in str(k) for k in stored.keys(True, True))
    assert not torch.all(stored["next", "reward"] == 1.0)  # CartPole's own reward is always 1


def test_ground_truth_backend_trains_on_env_reward(tmp_path):
    run = fit_run(tmp_path, "cartpole.yaml", *FAST, "reward.backend=ground_truth",
                  "agent.total_env_steps=200", "agent.learning_starts=50")
    tags = scalars(run)
    gt, vlm = dict(tags["train/episode_gt_return"]), dict(tags["train/episode_vlm_return"])
    assert gt == vlm


def test_humanoid_fit_with_fixed_episode_length(tiny_openclip, tmp_path):
    # The preset runs 32 envs in worker processes: one serial env is what this machine holds.
    run = fit_run(tmp_path, "humanoid_lotus.yaml", *FAST, *tiny_openclip.overrides(),
                  "env.num_envs=1", "env.parallel=false",
                  "agent.total_env_steps=120", "agent.learning_starts=40", "agent.train_freq=40",
                  "agent.gradient_steps=2", "env.episode_length=40", "agent.eval_every=0",
                  "reward.precision=32")
    tags = scalars(run)
    assert [v for _, v in tags["train/episode_length"]] == [40.0, 40.0, 40.0]
    assert (run / "checkpoints" / "last.ckpt").is_file()
