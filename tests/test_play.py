"""Evaluation videos during `vlmrm fit`, and `vlmrm play` on the saved checkpoint."""

from __future__ import annotations

import imageio.v2 as imageio
import pytest

from tests.helpers import CONFIGS, events, fit_run
from vlmrm.cli import main

QUIET = ["trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "reward.precision=32"]


def test_fit_records_videos_and_play_replays_the_checkpoint(tiny_openclip, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["fit", "--config", str(CONFIGS / "cartpole.yaml"), *tiny_openclip.overrides(),
                 *QUIET, "agent.total_env_steps=160", "agent.learning_starts=80",
                 "agent.hidden_sizes=[16,16]", "agent.batch_size=16", "agent.eval_every=0",
                 "env.episode_length=25", "logging.video_every=80",
                 f"logging.output_dir={out}", "logging.run_name=video"])
    assert code == 0
    run = out / "video"
    videos = sorted(p.name for p in (run / "videos").glob("*.mp4"))
    assert videos == ["step-160.mp4", "step-80.mp4"]
    frames = imageio.mimread(run / "videos" / "step-80.mp4")
    assert len(frames) == 25 and frames[0].shape[0] > 600  # frame plus caption strip
    images = events(run, "images")
    assert [e.step for e in images["eval/video"]] == [80, 160]
    assert images["eval/video"][0].encoded_image_string[:6] == b"GIF89a"

    movie = tmp_path / "episode.mp4"
    code = main(["play", "--checkpoint", str(run / "checkpoints" / "last.ckpt"),
                 "--out", str(movie), "--episodes", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "mean VLM return" in printed and "mean GT return" in printed
    assert "success rate" in printed
    assert len(imageio.mimread(movie)) == 2 * 25


def test_play_on_a_missing_checkpoint_is_a_clean_error(tmp_path, capsys):
    movie = tmp_path / "episode.mp4"
    code = main(["play", "--checkpoint", str(tmp_path / "nope.ckpt"), "--out", str(movie)])
    assert code == 2 and not movie.exists()
    assert "does not exist" in capsys.readouterr().err


def test_play_refuses_broken_and_mismatched_checkpoints_cleanly(tmp_path, capsys):
    run = fit_run(tmp_path, "cartpole.yaml", "reward.backend=ground_truth",
                  "agent.total_env_steps=48", "agent.learning_starts=16",
                  "agent.hidden_sizes=[16,16]", "agent.batch_size=16", "agent.eval_every=0")
    capsys.readouterr()  # the run's own output
    good = run / "checkpoints" / "last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:1000])
    text = tmp_path / "text.ckpt"
    text.write_text("not a checkpoint")
    movie = tmp_path / "episode.mp4"
    for ckpt, extra, expected in [
            (truncated, [], "is not a vlmrm checkpoint"),
            (text, [], "is not a vlmrm checkpoint"),
            (good, ["agent.hidden_sizes=[8]"], "do not fit the config"),
            (good, ["agent.hidden_sizez=[8]"], "Did you mean 'agent.hidden_sizes'?")]:
        code = main(["play", "--checkpoint", str(ckpt), "--out", str(movie), *extra])
        err = capsys.readouterr().err
        assert code == 2 and expected in err, err
        assert len(err.strip().splitlines()) == 1 and not movie.exists()


def test_play_writes_a_gif_and_refuses_other_names_before_any_episode(tmp_path, capsys,
                                                                       monkeypatch):
    run = fit_run(tmp_path, "cartpole.yaml", "reward.backend=ground_truth",
                  "agent.total_env_steps=48", "agent.learning_starts=16",
                  "agent.hidden_sizes=[16,16]", "agent.batch_size=16", "agent.eval_every=0",
                  "env.episode_length=12")
    capsys.readouterr()  # the run's own output
    ckpt = str(run / "checkpoints" / "last.ckpt")
    gif = tmp_path / "Episode.GIF"  # the extension in any case
    assert main(["play", "--checkpoint", ckpt, "--out", str(gif), "--episodes", "2"]) == 0
    assert gif.read_bytes()[:6] == b"GIF89a"
    frames = imageio.mimread(gif)
    assert len(frames) == 2 * 12 and frames[0].shape[0] > 400  # frame plus caption strip
    assert f"wrote {gif}" in capsys.readouterr().out
    check_a_window_models_overlay(ckpt, tmp_path, monkeypatch)

    import vlmrm.commands.play

    def no_episode(*args, **kwargs):
        raise AssertionError("an episode ran before the output name was checked")

    monkeypatch.setattr(vlmrm.commands.play, "run_episode", no_episode)
    for name, expected in [("episode.avi", "has the extension '.avi'"),
                           ("episode", "has no extension"),
                           ("episode.mp4.part", "has the extension '.part'")]:
        out = tmp_path / name
        assert main(["play", "--checkpoint", ckpt, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"--out {str(out)!r} {expected}" in err and "writes .mp4 or .gif" in err, err
        assert "episode.mp4 or episode.gif" in err.replace(str(tmp_path) + "/", "")
        assert len(err.strip().splitlines()) == 1 and not out.exists()



def check_a_window_models_overlay(ckpt: str, tmp_path, monkeypatch) -> None:
    """A model of two frames per reward scores each step of the played episode with the
    step before it (the first step with itself): what the overlay and returns show."""
    import numpy as np
    import torch

    import vlmrm.commands.play as play_command
    from tests.reward.test_seam import FrameDifference

    monkeypatch.setattr(play_command, "make_reward_model", lambda cfg: FrameDifference())
    played = []
    real = play_command.run_episode
    monkeypatch.setattr(play_command, "run_episode",
                        lambda *a, **k: played.append(real(*a, **k)) or played[-1])
    summary = play_command.play(ckpt, tmp_path / "toy.gif")
    (episode,) = played
    frames = episode.frames.numpy().astype(np.float64)
    expected = [0.0] + [-np.abs(frames[t] - frames[t - 1]).mean() / 255
                        for t in range(1, len(frames))]
    torch.testing.assert_close(episode.vlm_rewards.double(), torch.tensor(expected),
                               rtol=1e-4, atol=1e-6)
    assert summary["vlm_return"] == pytest.approx(sum(expected), rel=1e-4)
    assert (tmp_path / "toy.gif").read_bytes()[:6] == b"GIF89a"
    monkeypatch.undo()
