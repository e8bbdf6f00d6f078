"""The reward-hacking monitor: a hackable reward sets it off in a real training run; its
trend test and correlation on scripted episodes."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.data import OneHot

import vlmrm.scenes  # noqa: F401  (registers vlmrm/CartPole-v0)
from tests.helpers import CONFIGS, QUIET, scalars
from tests.rl.test_module import RecordingLogger
from vlmrm.backends.base import RewardBackend
from vlmrm.backends.preprocess import ImagePreprocessor
from vlmrm.collect.pipeline import DataPipeline, EpisodeTracker, make_replay_buffer
from vlmrm.config import Config, load_config
from vlmrm.reward.model import VLMRewardModel
from vlmrm.reward.seam import RewardModel, Scorer
from vlmrm.run.module import SACModule
from vlmrm.run.monitor import RewardMonitor, no_verdict_reason
from vlmrm.run.plan import plan_run

EPISODE = 6  # steps per scripted episode (one env; one batch per episode)


class CartPosition(RewardBackend):
    """TEST-ONLY hackable "VLM": the image embedding encodes where the black cart is drawn
    (its horizontal pixel centroid), the prompt "...right..." points at the right edge. The
    reward pays for pushing the cart right, a visual artefact, not for the upright pole."""

    name = "cart-position"

    def __init__(self) -> None:
        super().__init__("cart-position")
        self.model = nn.Identity()
        self.preprocessor = ImagePreprocessor(size=(64, 64), mean=(0.0,) * 3, std=(1.0,) * 3,
                                              interpolation="bilinear", resize_mode="squash")

    @property
    def embed_dim(self) -> int:
        return 2

    @property
    def context_length(self) -> int:
        return 77

    def _count_tokens(self, prompt: str) -> int:
        return len(prompt.split())

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        # Only the cart is black after resizing (the 1-pixel track line blurs to grey).
        dark = (pixels.amax(dim=1) < 0.3).float().sum(dim=1)  # [B, 64] dark pixels per column
        column = (dark * torch.arange(64.0)).sum(-1) / dark.sum(-1).clamp_min(1)
        phi = (column / 63 - 0.5) * math.pi  # left edge -pi/2 ... right edge +pi/2
        return torch.stack([phi.cos(), phi.sin()], dim=-1)

    def _encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        return torch.tensor([[0.0, 1.0] if "right" in p else [1.0, 0.0] for p in prompts])


def test_cart_position_reward_grows_with_the_cart_position():
    env = gym.make("vlmrm/CartPole-v0", render_mode="rgb_array").unwrapped
    env.reset(seed=0)
    frames = []
    for x in (-2.0, 0.0, 2.0):
        env.state = [x, 0.0, 0.0, 0.0]
        frames.append(torch.from_numpy(env.render()))
    env.close()
    rewards = VLMRewardModel(CartPosition(), ["the cart at the right"], ["a cart"])(
        torch.stack(frames))
    assert rewards[0] < -0.5 < 0 < rewards[2] and abs(rewards[1]) < 0.1


@pytest.mark.slow
def test_hackable_reward_sets_off_the_monitor_in_a_short_real_run(tmp_path, monkeypatch,
                                                                  caplog):
    """Real training, about a minute: the agent learns to push the cart right (what the
    hackable reward pays for), so the pole falls more often: VLM return up, GT return down."""
    from vlmrm.commands import fit as train

    monkeypatch.setattr(train, "make_reward_model", lambda cfg: VLMRewardModel(
        CartPosition(), ["the cart at the right"], ["a cart"]))
    cfg = load_config(CONFIGS / "quickstart.yaml", [
        *QUIET, "env.episode_length=50", "agent.total_env_steps=3000",
        "agent.learning_starts=300", "agent.learning_rate=1e-3", "agent.hidden_sizes=[64,64]",
        "agent.batch_size=64",
        # 30 points: the window spans the VLM return's climb (~1,000 to ~2,000 env steps).
        "agent.eval_every=0", "logging.monitor_window=30", "logging.video_every=1000",
        f"logging.output_dir={tmp_path}", "logging.run_name=hack"])
    with caplog.at_level(logging.WARNING, logger="vlmrm.run.monitor"):
        train.fit(cfg)
    tags = scalars(tmp_path / "hack")
    flags = tags["monitor/hacking_suspected"]
    fired = [s for s, v in flags if v == 1.0]
    print(f"hacking suspected at {len(fired)} of {len(flags)} checks, env steps {fired}")
    assert fired
    assert "Reward hacking suspected" in caplog.text
    assert sorted(p.name for p in (tmp_path / "hack" / "monitor").iterdir()) == [
        "step-1000.png", "step-2000.png", "step-3000.png"]


@pytest.mark.parametrize(("env", "verdict"), [
    (["logging.monitor_gt_measures_task=false"], False),
    (["env.id=Pendulum-v1", "env.num_envs=3"], True)], ids=["cartpole-no-verdict", "pendulum"])
def test_short_real_fit_gives_the_verdict_only_where_the_ground_truth_measures_the_task(
        tmp_path, monkeypatch, env, verdict):
    """A real fit with several envs (the hackable reward, a few hundred steps): trends are
    logged either way; the verdict, its progress-bar flag and the report's line follow
    whether the ground truth measures the task."""
    from vlmrm.commands import fit as train

    monkeypatch.setattr(train, "make_reward_model", lambda cfg: VLMRewardModel(
        CartPosition(), ["the cart at the right"], ["a cart"]))
    cfg = load_config(CONFIGS / "quickstart.yaml", [
        *QUIET, "env.num_envs=2", "env.episode_length=20", "agent.total_env_steps=600",
        "agent.learning_starts=480", "agent.hidden_sizes=[16]", "agent.batch_size=32",
        "agent.eval_every=0", "logging.monitor_window=7", f"logging.output_dir={tmp_path}",
        "logging.run_name=run", *env])
    result = train.fit(cfg)
    tags = scalars(tmp_path / "run")
    assert len(tags["monitor/gt_return_trend"]) >= 2
    assert ("monitor/hacking_suspected" in tags) == verdict
    line = result.report().splitlines()[1]
    if verdict:
        assert line.startswith("  reward-hacking monitor: no hacking suspected (")
    else:
        assert line == ("  reward-hacking monitor: no verdict, logging.monitor_gt_measures_task"
                        "=false: the env's own reward does not measure the task; its monitor/* "
                        "trends compare the VLM reward with that reward only")


class PixelReward(RewardModel):
    """Scripted reward model: a frame's reward is written in its first pixel (the env side is
    scripted; the monitor, pipeline, module and Trainer are real)."""

    def score(self, windows: torch.Tensor) -> torch.Tensor:
        return windows[..., -1, 0, 0, 0].float()


def scripted(vlm_per_episode, gt_per_episode, num_envs=1, by_env=0) -> Iterator[TensorDict]:
    """One episode per env per batch, all ending in the batch's last step (as the presets'
    100-step episodes do): in batch k, env i pays vlm(k) + by_env * i and gt(k) - by_env * i
    per step, so env order holds a trend of its own, opposite in sign for VLM and GT."""
    k = 0
    shape = (num_envs, EPISODE)
    while True:
        offset = by_env * torch.arange(num_envs).reshape(-1, 1)
        vlm = (vlm_per_episode(k) + offset + torch.arange(EPISODE) % 2).expand(shape)  # ranks vary
        pixels = torch.zeros(*shape, 8, 8, 3, dtype=torch.uint8)
        pixels[..., 0, 0, 0] = vlm.to(torch.uint8)
        done = torch.zeros(*shape, 1, dtype=torch.bool)
        done[:, -1] = True
        obs = torch.randn(*shape, 3)
        gt = (gt_per_episode(k) - offset).float().expand(shape).unsqueeze(-1)
        yield TensorDict({
            "observation": obs, "action": torch.nn.functional.one_hot(
                torch.arange(EPISODE) % 2, 2).expand(*shape, 2),
            "next": {"observation": obs, "pixels": pixels, "reward": gt.clone(), "done": done,
                     "terminated": torch.zeros_like(done), "truncated": done.clone()},
        }, batch_size=list(shape))
        k += 1


def fit_monitored(tmp_path, vlm, gt, episodes=12, every=0, correlation_every=EPISODE,
                  num_envs=1, by_env=0, no_verdict=None):
    cfg = Config()
    a = cfg.agent
    cfg.env.num_envs = num_envs
    a.total_env_steps, a.learning_starts, a.train_freq = episodes * EPISODE * num_envs, 10**6, EPISODE
    a.batch_size, a.hidden_sizes, a.eval_every = 8, [8], 0

    model = PixelReward()
    module = SACModule(cfg, 3, OneHot(2))
    module.attach(DataPipeline(scripted(vlm, gt, num_envs, by_env), Scorer(model),
                               make_replay_buffer(1000, torch.device("cpu")),
                               EpisodeTracker(num_envs)), plan_run(cfg))
    logger = RecordingLogger()
    monitor = RewardMonitor(tmp_path / "monitor", window=7, frames=2, every=every,
                            correlation_every=correlation_every, no_verdict=no_verdict)
    # With a progress bar: the monitor shows its flag there (and only then logs it).
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=logger, callbacks=[monitor],
                        enable_progress_bar=True, enable_checkpointing=False,
                        enable_model_summary=False, use_distributed_sampler=False)
    trainer.fit(module)
    return trainer, logger


def logged(logger, tag):
    return [(step, row[tag]) for step, row in logger.rows if tag in row]


@pytest.mark.parametrize("num_envs", [1, 32])
def test_rising_vlm_and_falling_gt_returns_are_flagged_once(tmp_path, caplog, num_envs):
    """With 32 envs the returns also trend across env order, the other way round: the
    monitor must follow time, one point per batch of 32 episodes ending together."""
    with caplog.at_level(logging.WARNING, logger="vlmrm.run.monitor"):
        trainer, logger = fit_monitored(tmp_path, vlm=lambda k: 10 + k, gt=lambda k: 20 - k,
                                        num_envs=num_envs, by_env=1)
    flags = logged(logger, "monitor/hacking_suspected")
    # Checked from the 7th point (the window) on, at every point: one batch each.
    batch = EPISODE * num_envs
    assert [s for s, _ in flags] == [batch * k for k in range(7, 13)]
    assert all(v == 1.0 for _, v in flags)
    assert logged(logger, "monitor/vlm_return_trend")[0][1] == pytest.approx(1.0)
    assert logged(logger, "monitor/gt_return_trend")[0][1] == pytest.approx(-1.0)
    assert caplog.text.count(f"Reward hacking suspected at env step {7 * batch}") == 1
    assert caplog.text.count("Reward hacking suspected") == 1  # warned once
    assert trainer.progress_bar_metrics["hacking"] == 1.0
    monitor = next(c for c in trainer.callbacks if isinstance(c, RewardMonitor))
    assert monitor.summary().startswith(
        f"reward-hacking monitor: hacking suspected from env step(s) {7 * batch};")


@pytest.mark.parametrize(("vlm", "gt"), [(lambda k: 10 + k, lambda k: 1 + k),
                                         (lambda k: 20, lambda k: 20)],
                         ids=["rising-together", "flat-over-time"])
def test_returns_rising_together_or_trending_only_across_envs_stay_silent(tmp_path, caplog,
                                                                          vlm, gt):
    """Rising together over time; or flat over time, with VLM returns rising and GT returns
    falling across the 32 envs of every batch (what the env-order monitor took for hacking)."""
    with caplog.at_level(logging.WARNING, logger="vlmrm.run.monitor"):
        trainer, logger = fit_monitored(tmp_path, vlm=vlm, gt=gt, num_envs=32, by_env=1)
    flags = logged(logger, "monitor/hacking_suspected")
    assert len(flags) == 6 and {v for _, v in flags} == {0.0}
    assert "hacking" not in caplog.text and trainer.progress_bar_metrics["hacking"] == 0.0
    monitor = next(c for c in trainer.callbacks if isinstance(c, RewardMonitor))
    assert monitor.summary() == ("reward-hacking monitor: no hacking suspected (6 checks of "
                                 "7-point return trends)")


def test_no_verdict_where_the_ground_truth_does_not_measure_the_task(tmp_path, caplog):
    reason = no_verdict_reason("vlmrm/Humanoid-v0", None)
    with caplog.at_level(logging.WARNING, logger="vlmrm.run.monitor"):
        trainer, logger = fit_monitored(tmp_path, vlm=lambda k: 10 + k, gt=lambda k: 20 - k,
                                        num_envs=32, no_verdict=reason)
    assert not logged(logger, "monitor/hacking_suspected")
    assert "hacking" not in trainer.progress_bar_metrics and "hacking" not in caplog.text
    # The trends themselves are still logged: they describe the env's own reward.
    assert [v for _, v in logged(logger, "monitor/gt_return_trend")] == [-1.0] * 6
    monitor = next(c for c in trainer.callbacks if isinstance(c, RewardMonitor))
    assert monitor.summary() == f"reward-hacking monitor: no verdict, {reason}; its monitor/* " \
                                "trends compare the VLM reward with that reward only"
    assert "locomotion reward" in reason


def test_vlm_gt_correlation_is_logged_every_n_steps_over_recent_steps(tmp_path):
    _, logger = fit_monitored(tmp_path, vlm=lambda k: 10 + k, gt=lambda k: k % 3, episodes=4)
    rho = logged(logger, "monitor/vlm_gt_spearman")
    # Every batch (6 steps): the first has one GT value (undefined correlation); later ones
    # pool the steps of earlier batches.
    assert [s for s, _ in rho] == [12, 18, 24] and all(-1 <= v <= 1 for _, v in rho)
    _, logger = fit_monitored(tmp_path / "sparse", vlm=lambda k: 10 + k, gt=lambda k: k % 3,
                              episodes=4, correlation_every=12)
    sparse = logged(logger, "monitor/vlm_gt_spearman")
    assert [s for s, _ in sparse] == [12, 24]
    assert sparse[-1][1] == rho[-1][1]  # the window kept every batch, logged or not


def test_top_frames_strip_every_n_steps(tmp_path):
    fit_monitored(tmp_path, vlm=lambda k: 10 + k, gt=lambda k: 1, episodes=4, every=12)
    strips = sorted(p.name for p in (tmp_path / "monitor").iterdir())
    assert strips == ["step-12.png", "step-24.png"]


NUM_ENVS = 32  # the presets'


def preset_batches(ending, rng, batches=1000, trend_from=None, drift=0.1, rho=0.0):
    """``batches`` batches of 32 envs as ``(env step, finished episodes)``: "together", the
    humanoid presets (100-step episodes, train_freq 100: all 32 end in every batch);
    "staggered", episodes of random length (~25 steps, train_freq 8: ~10 end per batch).
    Returns are N(0, 1), VLM and GT correlated ``rho``, env i offset by +0.1 i (VLM) and
    -0.1 i (GT): a trend across env order only. From batch ``trend_from`` on, the VLM
    return rises and the GT return falls by ``drift`` per batch."""
    for b in range(batches):
        if ending == "together":
            ended, step = np.arange(NUM_ENVS), (b + 1) * 100 * NUM_ENVS
        else:
            ended, step = np.flatnonzero(rng.random(NUM_ENVS) < 8 / 25), (b + 1) * 8 * NUM_ENVS
        z, other = rng.normal(size=(2, ended.size))
        trend = 0.0 if trend_from is None else drift * max(0, b - trend_from)
        vlm = z + 0.1 * ended + trend
        gt = rho * z + math.sqrt(1 - rho**2) * other - 0.1 * ended - trend
        yield step, {"vlm_return": vlm.tolist(), "gt_return": gt.tolist()}


def watch(monitor, batches):
    """Feed the monitor's real episode path; the env steps where it logged each verdict."""
    monitor.start(NUM_ENVS)
    verdicts = []
    for step, finished in batches:
        out = monitor.observe_episodes(finished, step)
        if "monitor/hacking_suspected" in out:
            verdicts.append((step, out["monitor/hacking_suspected"]))
    return verdicts


@pytest.mark.parametrize("rho", [0.0, 0.8], ids=["independent", "correlated"])
@pytest.mark.parametrize("ending", ["together", "staggered"])
def test_stationary_returns_over_1000_batches_raise_no_alarm(tmp_path, ending, rho):
    monitor = RewardMonitor(tmp_path)
    verdicts = watch(monitor, preset_batches(ending, np.random.default_rng(0), rho=rho))
    # together: a point per batch, checked from the 20th; staggered: one per ~3 batches.
    assert len(verdicts) == (981 if ending == "together" else pytest.approx(290, abs=40))
    assert {v for _, v in verdicts} == {0.0} and not monitor.onsets


@pytest.mark.parametrize("ending", ["together", "staggered"])
def test_vlm_rising_while_gt_falls_over_time_raises_it(tmp_path, caplog, ending):
    per_batch = (100 if ending == "together" else 8) * NUM_ENVS
    monitor = RewardMonitor(tmp_path)
    with caplog.at_level(logging.WARNING, logger="vlmrm.run.monitor"):
        verdicts = watch(monitor, preset_batches(ending, np.random.default_rng(0),
                                                 trend_from=500))
    fired = [s for s, v in verdicts if v == 1.0]
    print(f"{ending}: trend from env step {500 * per_batch}, first alarm {fired[0]}, "
          f"{len(fired)} of {sum(s > 500 * per_batch for s, _ in verdicts)} checks after")
    # Silent while the returns have no trend; on within 100 batches of the trend's start.
    assert 500 * per_batch < fired[0] <= 600 * per_batch
    assert monitor.onsets[0] == fired[0] and "Reward hacking suspected" in caplog.text
    assert len(fired) > 0.8 * sum(s > 600 * per_batch for s, _ in verdicts)


def test_no_verdict_on_1000_batches_of_hacking_where_gt_does_not_measure_the_task(
        tmp_path, caplog):
    monitor = RewardMonitor(tmp_path, no_verdict=no_verdict_reason("vlmrm/Humanoid-v0", None))
    with caplog.at_level(logging.WARNING, logger="vlmrm.run.monitor"):
        assert watch(monitor, preset_batches("together", np.random.default_rng(0),
                                             trend_from=500)) == []
    assert monitor.checks == 981 and not monitor.onsets and "hacking" not in caplog.text
    assert "no verdict, the ground truth of vlmrm/Humanoid-v0 is" in monitor.summary()


@pytest.mark.parametrize(("config", "overrides", "verdict"), [
    ("humanoid_kneeling.yaml", [], False),
    ("humanoid_lotus.yaml", [], False),
    ("humanoid_lotus.yaml", ["logging.monitor_gt_measures_task=true"], True),
    ("cartpole.yaml", [], True),
    ("mountaincar.yaml", [], True),
    ("quickstart.yaml", ["env.id=Pendulum-v1", "env.episode_length=null"], True),
    ("quickstart.yaml", ["logging.monitor_gt_measures_task=false"], False),
])
def test_each_scene_says_whether_its_ground_truth_measures_the_task(tmp_path, config,
                                                                    overrides, verdict):
    from vlmrm.run.build import make_callbacks

    cfg = load_config(CONFIGS / config, overrides)
    monitor = next(c for c in make_callbacks(cfg, tmp_path) if isinstance(c, RewardMonitor))
    assert (monitor.no_verdict is None) == verdict
    if not verdict:
        assert "does not measure the task" in monitor.no_verdict


def test_monitor_window_below_7_points_is_refused():
    from vlmrm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"logging.monitor_window=6 must be >= 7 points"):
        load_config(CONFIGS / "quickstart.yaml", ["logging.monitor_window=6"])


def test_top_frames_keeps_the_best_frames_best_first():
    from vlmrm.collect.pipeline import top_frames

    frames = torch.arange(6, dtype=torch.uint8).reshape(2, 3, 1, 1, 1).expand(2, 3, 2, 2, 3)
    rewards = torch.tensor([[0.1, 0.9, 0.3], [0.8, 0.2, 0.5]]).unsqueeze(-1)
    kept, best = top_frames(frames, rewards, 3)
    assert kept[:, 0, 0, 0].tolist() == [1, 3, 5] and best.tolist() == pytest.approx([.9, .8, .5])
