"""`vlmrm evaluate-reward` with models of every kind in one call: an image embedding model
(formula sweep on its embeddings), and models scored through the seam's windows (a video
model's reward at a frame uses the frames before it in its episode)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vlmrm.commands.evaluate_reward as command
from tests.backends.fixtures import build_hf_clip
from tests.helpers import CONFIGS
from tests.reward.test_seam import FrameDifference, shrink
from vlmrm.backends.base import VIDEO
from vlmrm.cli import main
from vlmrm.reward.seam import score_episode

QUICKSTART = str(CONFIGS / "quickstart.yaml")
TOY = "xclip:toy-two-frames"  # a registered backend name; load_model swaps in the toy


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """One random-policy episode of the quick start, every step (--stride 1)."""
    out = tmp_path_factory.mktemp("kinds") / "frames"
    assert main(["dataset", "--config", QUICKSTART, "--out", str(out), "--episodes", "1",
                 "--stride", "1", "env.episode_length=40"]) == 0
    return out


@pytest.fixture(scope="module")
def evaluated(frames, tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    build_hf_clip(root / "clip")
    real = command.load_model

    def load(cfg, spec, device):
        if spec.label != TOY:
            return real(cfg, spec, device)
        return command.Loaded(VIDEO, FrameDifference(), lambda prompts: FrameDifference(),
                              command.reward_for(cfg.reward, spec, VIDEO))

    mp = pytest.MonkeyPatch()
    mp.setattr(command, "load_model", load)
    out = root / "eval"
    try:
        assert main(["evaluate-reward", "--config", QUICKSTART, "--out", str(out),
                     "--alphas", "0,1", "--frames", str(frames),
                     "--backends", f"hf_clip:{root / 'clip'},{TOY}"]) == 0
    finally:
        mp.undo()
    return out, json.loads((out / "summary.json").read_text())


def test_each_kind_gets_its_own_formulas_metrics_and_plots(evaluated):
    out, summary = evaluated
    clip = summary["models"][0]
    assert summary["kinds"] == {clip: "embedding", TOY: "video"}
    land = summary["landscape"]["results"]
    assert [(r["model"], r["formula"], r["alpha"]) for r in land] == [
        (clip, "goal_baseline", 0.0), (clip, "goal_baseline", 1.0), (TOY, "FrameDifference", None)]
    assert all(set(r) >= {"spearman", "epic", "roc_auc"} for r in land)
    assert len(summary["frames"]["results"]) == 3
    for name in (f"landscape-{command.slug(TOY)}.png",
                 f"frames-histogram-{command.slug(TOY)}.png"):
        assert (out / name).is_file()


def test_a_sweep_state_is_a_still_and_labelled_frames_get_their_episodes_windows(
        evaluated, frames):
    out, _ = evaluated
    land = [float(r["reward"]) for r in read_csv(out / "landscape.csv") if r["model"] == TOY]
    assert land and all(r == 0 for r in land)  # a still: no change between its frames
    labels = read_csv(frames / "labels.csv")
    pictures = torch.from_numpy(np.stack([np.asarray(Image.open(frames / r["file"]))
                                          for r in labels]))
    expected = score_episode(FrameDifference(), shrink(pictures)).double().numpy()
    got = [float(r["reward"]) for r in read_csv(out / "frames.csv") if r["model"] == TOY]
    assert expected[0] == 0 and (expected[1:] < 0).any()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_the_prompt_check_flags_a_model_that_ignores_the_prompt(evaluated):
    _, summary = evaluated
    toy = [c for c in summary["prompt_check"]["results"] if c["model"] == TOY]
    assert [c["spearman"] for c in toy] == [1.0, 1.0] and all(c["ignored"] for c in toy)
    assert any(w.startswith(f"{TOY} ranks the frames") for w in summary["warnings"])
