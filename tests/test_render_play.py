"""`vlmrm render`, the video callback and `vlmrm play`, end to end with a tiny model."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from vlmrm.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUIET = ["trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "reward.precision=32"]


@pytest.mark.parametrize("config", ["humanoid_kneeling", "cartpole", "mountaincar"])
def test_render_writes_a_grid_of_what_the_model_sees(config, tiny_openclip, tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = main(["render", "--config", str(CONFIGS / f"{config}.yaml"), "--out", str(out),
                 "--steps", "4", "--stride", "2", *tiny_openclip.overrides(), *QUIET])
    assert code == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("frame")]
    assert len(lines) == 4 and all("reward" in x for x in lines)
    grid = np.asarray(Image.open(out).convert("RGB"))
    # 2 x 2 frames of the model's 64 x 64 input, each with a caption row beneath it.
    assert grid.shape[1] == 2 * (64 + 4) + 4 and grid.shape[0] > 2 * 64
    tile = grid[4:68, 4:68].astype(int)
    assert tile.std() > 5  # a picture, not a blank tile


def test_render_errors_leave_no_file(tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = main(["render", "--config", str(CONFIGS / "cartpole.yaml"), "--out", str(out),
                 "reward.model=NoSuchArch/x"])
    assert code == 2 and not out.exists()
    assert "NoSuchArch" in capsys.readouterr().err


def _tensorboard_images(run: Path) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list] = {}
    for events in run.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        for tag in acc.Tags()["images"]:
            found.setdefault(tag, []).extend(acc.Images(tag))
    return found


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
    images = _tensorboard_images(run)
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
