"""The scoring seam (vlmrm.reward.seam): the frame history a multi-frame reward model needs,
and a toy two-frame model trained, stopped by SIGTERM and resumed exactly through it."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

import vlmrm.commands.fit
from tests.helpers import CONFIGS, QUIET
from tests.rl.test_resume import FinalState, SigtermAt
from vlmrm.commands.fit import fit
from vlmrm.config import load_config
from vlmrm.keys import DONE, GT_REWARD, NEXT, PIXELS, REWARD
from vlmrm.reward.seam import FrameHistory, RewardModel, Scorer, episode_windows, score_episode
from vlmrm.run.resume import plan_resume
from vlmrm.run.runstate import STATE


def shrink(frames: torch.Tensor) -> torch.Tensor:
    """Every 12th pixel: CartPole's 600 x 600 frames become 50 x 50 where they are rendered."""
    return frames[..., ::12, ::12, :].contiguous()


class FrameDifference(RewardModel):
    """A toy two-frame reward model: minus the mean absolute change of the picture between
    consecutive frames (0 at an episode's first step, whose window repeats its frame)."""

    frames_needed = 2

    @property
    def resize_frames(self):
        return shrink

    def score(self, windows: torch.Tensor) -> torch.Tensor:
        w = windows.float()
        return -(w[..., 1, :, :, :] - w[..., 0, :, :, :]).abs().mean((-3, -2, -1)) / 255


def _frames(envs: int, steps: int, start: int = 0) -> torch.Tensor:
    """Frames ``[envs, steps, 2, 2, 3]`` whose every pixel is a distinct label: 100 * env +
    step."""
    labels = torch.arange(start, start + steps) + 100 * torch.arange(envs)[:, None]
    return labels[..., None, None, None].expand(envs, steps, 2, 2, 3).to(torch.uint8)


def _labels(windows: torch.Tensor) -> list:
    """Each window as the labels of its frames."""
    return windows[..., 0, 0, 0].tolist()


def test_a_window_at_an_episode_start_repeats_the_episodes_first_frame():
    history = FrameHistory(3)
    done = torch.tensor([[False, True, False, False], [False, False, False, False]])
    windows = history.windows(_frames(2, 4), done)
    assert windows.shape == (2, 4, 3, 2, 2, 3)
    assert _labels(windows[0]) == [[0, 0, 0], [0, 0, 1], [2, 2, 2], [2, 2, 3]]
    assert _labels(windows[1]) == [[100, 100, 100], [100, 100, 101], [100, 101, 102],
                                   [101, 102, 103]]


def test_the_history_carries_across_batch_ends_and_is_restored_from_its_state():
    done = torch.zeros(2, 3, dtype=torch.bool)
    done[1, 2] = True  # env 1's episode ends with the first batch
    straight = FrameHistory(3)
    straight.windows(_frames(2, 3), done)
    saved = straight.state_dict()
    restored = FrameHistory(3)
    restored.load_state_dict(saved)
    for history in (straight, restored):
        windows = history.windows(_frames(2, 2, start=3), torch.zeros(2, 2, dtype=torch.bool))
        assert _labels(windows[0]) == [[1, 2, 3], [2, 3, 4]]
        assert _labels(windows[1]) == [[103, 103, 103], [103, 103, 104]]
    assert torch.equal(straight.frames, restored.frames)


def test_reset_starts_every_episode_again_and_one_frame_keeps_nothing():
    history = FrameHistory(2)
    history.windows(_frames(1, 2), torch.zeros(1, 2, dtype=torch.bool))
    history.reset()
    assert _labels(history.windows(_frames(1, 1, start=7), torch.zeros(1, 1,
                                                                       dtype=torch.bool))) \
        == [[[7, 7]]]
    one = FrameHistory(1)
    frames = _frames(2, 3)
    windows = one.windows(frames, torch.zeros(2, 3, dtype=torch.bool))
    assert windows.shape == (2, 3, 1, 2, 2, 3) and torch.equal(windows[..., 0, :, :, :], frames)
    assert one.state_dict() == {} and one.frames is None


def test_episode_windows_and_score_episode_pad_with_the_first_frame():
    frames = _frames(1, 4)[0]
    assert _labels(episode_windows(frames, 2)) == [[0, 0], [0, 1], [1, 2], [2, 3]]
    rewards = score_episode(FrameDifference(), frames)
    assert rewards[0] == 0 and (rewards[1:] < 0).all()


def test_the_scorer_writes_rewards_keeps_the_envs_and_drops_the_frames():
    frames = _frames(2, 3)
    done = torch.zeros(2, 3, 1, dtype=torch.bool)
    env_reward = torch.ones(2, 3, 1)
    batch = TensorDict({NEXT: {PIXELS: frames, DONE: done, REWARD: env_reward}},
                       batch_size=[2, 3])
    scored = Scorer(FrameDifference()).score(batch)
    assert PIXELS not in scored[NEXT].keys()
    assert torch.equal(scored[NEXT, GT_REWARD], env_reward)
    want = torch.tensor([[0.0, -1.0, -1.0]] * 2) / 255
    torch.testing.assert_close(scored[NEXT, REWARD][..., 0], want)
    with pytest.raises(ValueError, match="needs 2 frames"):
        FrameDifference()(frames)


TOTAL, STOP = 640, 320
RUN = ("agent.total_env_steps=640", "agent.learning_starts=96", "agent.train_freq=8",
       "agent.gradient_steps=1", "agent.batch_size=32", "agent.hidden_sizes=[32,32]",
       "env.num_envs=2", "env.episode_length=50", "agent.eval_every=320",
       "agent.eval_episodes=1", "logging.video_every=320", "logging.checkpoint_every=100000",
       *QUIET)


@pytest.mark.slow  # three short runs: ~65-90 s on 2 shared cores
def test_a_two_frame_reward_model_trains_and_resumes_exactly_after_sigterm(tmp_path,
                                                                          monkeypatch):
    """CartPole trained with a toy two-frame reward model (FrameDifference), added through
    the seam only: the test hands it to `vlmrm fit` where the configured model would be
    built, and nothing outside vlmrm.reward.seam changes for it (collection, evaluation,
    videos, the reward monitor and checkpoints all meet it through the seam). A run stopped
    by SIGTERM mid-run and resumed equals the straight run: parameters, optimizer state and
    replay contents, with the rewards that depend on the frame history saved across the
    stop (50-step episodes end inside 8-step batches)."""
    monkeypatch.setattr(vlmrm.commands.fit, "make_reward_model", lambda cfg: FrameDifference())
    overrides = [*RUN, f"logging.output_dir={tmp_path}"]

    def run(name: str, callbacks):
        cfg = load_config(CONFIGS / "quickstart.yaml", [*overrides, f"logging.run_name={name}"])
        return fit(cfg, callbacks=callbacks)

    straight = FinalState()
    run("straight", [straight])
    stopped = run("split", [SigtermAt(STOP)])
    assert stopped.interrupted and STOP <= stopped.env_steps < TOTAL
    saved = torch.load(stopped.run_dir / "checkpoints" / f"step-{stopped.env_steps}.data-r0"
                       / STATE, weights_only=True)
    assert saved["data"]["frame_history"]["frames"].shape == (2, 1, 50, 50, 3)  # last frames

    resumed = FinalState()
    result = fit(None, resume=plan_resume(str(stopped.run_dir), None, []), callbacks=[resumed])
    assert not result.interrupted and resumed.env_steps == straight.env_steps == TOTAL
    rewards = straight.replay[NEXT, REWARD]
    assert (rewards <= 0).all() and (rewards < 0).any()  # the toy model's, not the env's
    resumed.assert_equals(straight)


def test_render_scores_a_two_frame_model_over_the_whole_rollout(tmp_path, monkeypatch):
    """`vlmrm render` meets the toy model through the seam too: windows over the random
    rollout, the first step's repeating its frame (reward 0), later ones real changes."""
    import vlmrm.commands.render as render_command

    monkeypatch.setattr(render_command, "make_reward_model", lambda cfg: FrameDifference())
    cfg = load_config(CONFIGS / "quickstart.yaml", ["trainer.accelerator=cpu"])
    values = render_command.render(cfg, tmp_path / "grid.png", steps=6, stride=1)
    assert values[0] == 0 and any(v < 0 for v in values[1:])
    assert (tmp_path / "grid.png").stat().st_size > 0
