"""`vlmrm evaluate-reward` with models of every kind in one call, on tiny local models: CLIP
(formula sweep on its image embeddings), X-CLIP (the same sweep on its window embeddings),
a generative judge (its own formula), and a toy two-frame model scored through the seam's
windows (a window model's reward at a frame uses the frames before it in its episode)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vlmrm.commands.evaluate_reward as command
import vlmrm.evaluation.report as report
from tests.backends.fixtures import build_hf_clip, build_judge, build_xclip
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
    build_xclip(root / "xclip")
    build_judge(root / "judge")
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
                     "--backends", ",".join([f"hf_clip:{root / 'clip'}", f"xclip:{root / 'xclip'}",
                                           f"hf_judge:{root / 'judge'}", TOY])]) == 0
    finally:
        mp.undo()
    return out, json.loads((out / "summary.json").read_text()), root


def test_each_kind_gets_its_own_formulas_metrics_and_plots(evaluated):
    out, summary, _ = evaluated
    clip, xclip, judge, _ = summary["models"]
    assert summary["kinds"] == {clip: "embedding", xclip: "video", judge: "judge", TOY: "video"}
    land = summary["landscape"]["results"]
    assert [(r["model"], r["formula"], r["alpha"]) for r in land] == [
        (clip, "goal_baseline", 0.0), (clip, "goal_baseline", 1.0),
        (xclip, "goal_baseline", 0.0), (xclip, "goal_baseline", 1.0),
        (judge, "yes_no", None), (TOY, "FrameDifference", None)]
    assert all(set(r) >= {"spearman", "epic", "roc_auc"} for r in land)
    assert len(summary["frames"]["results"]) == 6
    assert summary["frames"]["results"][4]["roc_auc"] is not None  # the judge's figures
    for model in summary["models"]:
        for name in (f"landscape-{report.slug(model)}.png",
                     f"frames-histogram-{report.slug(model)}.png"):
            assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert {"landscape.csv", "frames.csv", "summary.json"} <= set(summary["files"])


def test_a_sweep_state_is_a_still_and_labelled_frames_get_their_episodes_windows(
        evaluated, frames):
    out, _, _ = evaluated
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
    _, summary, _ = evaluated
    toy = [c for c in summary["prompt_check"]["results"] if c["model"] == TOY]
    assert [c["spearman"] for c in toy] == [1.0, 1.0] and all(c["ignored"] for c in toy)
    assert any(w.startswith(f"{TOY} ranks the frames") for w in summary["warnings"])


def _pictures(frames) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(Image.open(frames / r["file"]))
                                      for r in read_csv(frames / "labels.csv")]))


def _rewards(out, model: str, alpha: str = "") -> list[float]:
    return [float(r["reward"]) for r in read_csv(out / "frames.csv")
            if r["model"] == model and r["alpha"] == alpha]


def test_video_and_judge_rewards_are_their_models_own_over_the_episode(evaluated, frames):
    """The figures come from what training would score: X-CLIP's goal-baseline reward of
    each frame's window of the episode, and the judge's yes_no of each frame."""
    from dataclasses import replace

    from vlmrm.config import load_config
    from vlmrm.run.build import make_reward_model

    out, summary, root = evaluated
    _, xclip, judge, _ = summary["models"]
    pictures = _pictures(frames)
    cfg = load_config(QUICKSTART, ["trainer.accelerator=cpu", "reward.precision=32"])
    video = make_reward_model(replace(cfg, reward=replace(
        cfg.reward, backend="xclip", model=str(root / "xclip"), alpha=1.0, transform=None)))
    assert video.frames_needed > 1
    np.testing.assert_allclose(_rewards(out, xclip, "1"), score_episode(video, pictures),
                               rtol=1e-4, atol=1e-6)
    asker = make_reward_model(replace(cfg, reward=replace(
        cfg.reward, backend="hf_judge", model=str(root / "judge"), transform=None)))
    seen = pictures if asker.resize_frames is None else asker.resize_frames(pictures)
    np.testing.assert_allclose(_rewards(out, judge), score_episode(asker, seen),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend, key", [("xclip", "reward.goal_prompts"),
                                          ("hf_judge", "reward.goal_prompts"),
                                          ("hf_judge", "reward.question")])
def test_prompts_too_long_for_a_kind_are_refused_where_the_config_builds_it(
        evaluated, backend, key):
    """The config path (`make_reward_model`, as fit, play and evaluate-reward build) checks
    each kind's prompt length: a video model's text encoder, a judge's rendered question."""
    from vlmrm.config import load_config
    from vlmrm.errors import ConfigError
    from vlmrm.run.build import make_reward_model

    _, _, root = evaluated
    long = " ".join(["pole"] * 300)
    extra = ([f"reward.goal_prompts=[{long}]"] if key == "reward.goal_prompts"
             else [f"reward.question='Does this image show {{goal}}? {long}'"])
    cfg = load_config(QUICKSTART, [
        "trainer.accelerator=cpu", f"reward.backend={backend}",
        f"reward.model={root / ('xclip' if backend == 'xclip' else 'judge')}",
        *(["reward.transform=null"] if backend == "hf_judge" else []), *extra])
    with pytest.raises(ConfigError, match=rf"{key.replace('.', '[.]')}.* tokens long"):
        make_reward_model(cfg)
