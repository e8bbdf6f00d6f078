"""``vlmrm evaluate-reward``: compare reward models on a scene without training an agent.

For each model (``--backends``, of any kind: image embedding, video, judge) it scores, once:

- the scene's goal-variable sweep, where it has one (:mod:`vlmrm.scenes.sweeps`): every grid
  state rendered by the env's own ``render()``, a still picture (a video model sees it
  repeated over its window, as at an episode's first step);
- a labelled frame set (``--frames``), for any scene (a video model sees each frame with the
  set's earlier frames of its episode, see :mod:`vlmrm.evaluation.frameset`);
- otherwise random-policy frames (actions drawn from ``seed``), so every scene gets at least
  the prompt check (a video model sees each frame's window of the rollout);

An embedding model (image or video) is scored with every formula (the goal-baseline projection
at each ``--alphas`` value, plus the config's own chain unless the sweep holds it) on
embeddings computed once; a judge with its configured formula. It writes, into a new folder:
``summary.json``, ``landscape.csv`` / ``frames.csv`` (every reward), and PNG plots. Everything
is computed before anything is written; the folder appears complete or not at all.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmrm.backends.base import EMBEDDING, JUDGE, VIDEO
from vlmrm.backends.registry import backend_entry
from vlmrm.commands.render import random_rollout
from vlmrm.config import Config
from vlmrm.config.schema import RewardConfig
from vlmrm.envs.factory import make_gym_env
from vlmrm.evaluation import plots
from vlmrm.evaluation.frameset import FrameSet, labels_csv
from vlmrm.evaluation.options import BackendSpec
from vlmrm.evaluation.scoring import (
    PROMPT_CHECK_RHO,
    UNRELATED_PROMPT,
    Formula,
    embed_windows,
    formulas_for,
    labelled_metrics,
    landscape_metrics,
    prompt_check,
    score,
    score_windows,
    similarity_ranking,
    still_index,
    window_index,
)
from vlmrm.fileio import atomic_dir, write_text
from vlmrm.keys import DONE, NEXT, PIXELS
from vlmrm.reward.seam import EmbeddingRewardModel, RewardModel
from vlmrm.reward.spec import FIRST_KIND, FORMULAS, resolve_transform, without_mix
from vlmrm.run.build import make_backend, reward_device, reward_model_for
from vlmrm.scenes.sweeps import Sweep, sweep_for

#: Random-policy frames scored when the scene has no sweep and no frame set is given.
ROLLOUT_FRAMES, ROLLOUT_STRIDE = 64, 5


@dataclass
class Inputs:
    """What every model is evaluated on."""

    cfg: Config
    formulas: list[Formula]
    sweep: Sweep | None
    values: np.ndarray | None  # the sweep's grid
    frameset: FrameSet | None
    frames: list[np.ndarray] | None  # the frame set's pictures, loaded once
    check_only: bool = False  # --prompt-check: no metrics, CSVs or plots


@dataclass
class ModelResult:
    """One model's rewards per formula on each frame source, and its prompt check."""

    spec: BackendSpec
    kind: str
    formulas: list[Formula]  # the sweep (embedding kinds) or the model's own (a judge)
    landscape: list[np.ndarray] | None
    labelled: list[np.ndarray] | None
    rollout: list[np.ndarray] | None
    prompt_check: list[dict[str, Any]]


@dataclass
class Loaded:
    """A model to evaluate, and how to build it again with other goal prompts (the prompt
    check of a model that has no text embeddings to compare)."""

    kind: str
    model: RewardModel
    retarget: Callable[[Sequence[str]], RewardModel]
    reward: RewardConfig


def evaluate_reward(cfg: Config, out: str | os.PathLike, specs: Sequence[BackendSpec],
                    alphas: Sequence[float], frameset: FrameSet | None = None,
                    prompt_check_only: bool = False) -> dict[str, Any]:
    """Evaluate every model in ``specs``; write the outputs to ``out`` (new or empty) and
    return the summary (also ``out/summary.json``)."""
    start = time.perf_counter()
    sweep = sweep_for(cfg.env.id)
    # The embedding formulas every embedding or video model is scored with (per model:
    # ModelResult.formulas); a judge config's chain is not one of them.
    own = BackendSpec(cfg.reward.backend, cfg.reward.model)
    inputs = Inputs(cfg, formulas_for(reward_for(cfg.reward, own, EMBEDDING), alphas), sweep,
                    None if sweep is None else sweep.grid(), frameset,
                    None if frameset is None else frameset.load_frames(), prompt_check_only)
    device = reward_device(cfg)
    results = []
    for spec in specs:
        loaded = load_model(cfg, spec, device)
        results.append(evaluate_model(inputs, spec, loaded, alphas))
        del loaded  # one model in memory at a time
    summary = make_summary(inputs, results)
    with atomic_dir(out) as tmp:
        summary["files"] = write_outputs(tmp, inputs, results, summary)
        summary["seconds"] = round(time.perf_counter() - start, 2)
        write_text(tmp / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def reward_for(reward: RewardConfig, spec: BackendSpec, kind: str) -> RewardConfig:
    """The config's reward settings for one compared model: ``window`` for a video model
    only, ``question`` for a judge only, ``transform`` where its formula fits the kind (else
    the kind's default), so that one config compares models of every kind. A ``mix`` item
    is left out: its terms are env state, not in the frames scored here."""
    transform = without_mix(reward.transform) if reward.transform else None
    first = (transform or [None])[0]
    name = first.get("name") if isinstance(first, dict) else getattr(first, "name", first)
    info = FORMULAS.get(name) if isinstance(name, str) else None
    fits = name is None or (info is not None and info.kind == FIRST_KIND.get(kind))
    return replace(reward, backend=spec.backend, model=spec.model,
                   alpha=0.0 if kind == JUDGE else reward.alpha,
                   window=reward.window if kind == VIDEO else None,
                   question=reward.question if kind == JUDGE else None,
                   transform=(transform or None) if fits else None)


def load_model(cfg: Config, spec: BackendSpec, device: torch.device) -> Loaded:
    """The backend of ``spec`` loaded once, and its reward model with the config's prompts."""
    kind = backend_entry(spec.backend).load().kind
    reward = reward_for(cfg.reward, spec, kind)
    backend = make_backend(reward, device)

    def retarget(prompts: Sequence[str]) -> RewardModel:
        return reward_model_for(backend, replace(reward, goal_prompts=list(prompts)))

    return Loaded(kind, reward_model_for(backend, reward), retarget, reward)


def own_formula(loaded: Loaded) -> Formula:
    """The formula a model that has no embeddings scores with: a judge's as configured
    (``reward.transform``, default ``[yes_no]``), else the model's own."""
    if loaded.kind != JUDGE:
        return Formula(type(loaded.model).__name__, None, [])
    spec = resolve_transform(0.0, loaded.reward.transform, JUDGE)
    return Formula(" > ".join(item["name"] for item in spec), None, spec)


def evaluate_model(inputs: Inputs, spec: BackendSpec, loaded: Loaded, alphas: Sequence[float]
                   ) -> ModelResult:
    """Every formula on the windows' embeddings (encoded once) for an embedding model, the
    model's own rewards for any other; and the prompt check."""
    model, k = loaded.model, loaded.model.frames_needed
    sources: dict[str, tuple[list[np.ndarray], torch.Tensor]] = {}
    if inputs.sweep is not None:
        frames = render_sweep(inputs.cfg, inputs.sweep, inputs.values, model.image_size)
        sources["landscape"] = frames, still_index(len(frames), k)
    if inputs.frames is not None:
        sources["labelled"] = inputs.frames, frameset_index(inputs.frameset, k)
    if not sources:
        sources["rollout"] = rollout_windows(inputs.cfg, model)
    if isinstance(model, EmbeddingRewardModel):
        formulas = formulas_for(loaded.reward, alphas)
        seen = {name: embed_windows(model, *src) for name, src in sources.items()}
        scored = {name: score(model.prompts, e, formulas) for name, e in seen.items()}
        rank = similarity_ranking(model, torch.cat(list(seen.values())))
    else:
        formulas = [own_formula(loaded)]
        scored = {name: [score_windows(model, *src)] for name, src in sources.items()}
        rank = retargeted_ranking(loaded, sources, scored)
    return ModelResult(spec, loaded.kind, formulas, scored.get("landscape"),
                       scored.get("labelled"), scored.get("rollout"),
                       prompt_check(rank, loaded.reward))


def retargeted_ranking(loaded: Loaded, sources: dict, scored: dict
                       ) -> Callable[[Sequence[str]], np.ndarray]:
    """Prompts -> the model's rewards of every window with those prompts as its goal."""
    own = np.concatenate([rewards[0] for rewards in scored.values()])

    def rank(prompts: Sequence[str]) -> np.ndarray:
        if list(prompts) == list(loaded.reward.goal_prompts):
            return own
        model = loaded.retarget(prompts)
        return np.concatenate([score_windows(model, *src) for src in sources.values()])

    return rank


def frameset_index(fs: FrameSet, k: int) -> torch.Tensor:
    """``[N, k]``: each labelled frame's window from the set's frames of its episode (its
    own frame repeated without episode and step columns)."""
    ordered = fs.episode_starts()
    if ordered is None or k == 1:
        return still_index(len(fs), k)
    order, starts = ordered
    at = torch.tensor(order)
    idx = torch.empty(len(fs), k, dtype=torch.long)
    idx[at] = at[window_index(starts, k)]
    return idx


def rollout_windows(cfg: Config, model: RewardModel) -> tuple[list[np.ndarray], torch.Tensor]:
    """Random-policy frames every ``ROLLOUT_STRIDE`` steps, each with its window of the
    rollout (across episode ends as in training); actions from the config's seed."""
    with torch.random.fork_rng():  # random actions from the config's seed: repeatable
        torch.manual_seed(cfg.seed)
        td = random_rollout(cfg, model.image_size, ROLLOUT_FRAMES * ROLLOUT_STRIDE)
    done = td.get((NEXT, DONE)).reshape(-1).tolist()
    starts = [True, *done[:-1]]
    idx = window_index(starts, model.frames_needed)
    pick = slice(ROLLOUT_STRIDE - 1, None, ROLLOUT_STRIDE)
    return list(td.get((NEXT, PIXELS)).numpy()), idx[pick][:ROLLOUT_FRAMES]


def render_sweep(cfg: Config, sweep: Sweep, values: np.ndarray, size: tuple[int, int]
                 ) -> list[np.ndarray]:
    """The sweep's states rendered by the env as training builds it (look, size)."""
    env = make_gym_env(cfg.env, size)
    try:
        return list(sweep.render(env, values))
    finally:
        env.close()


# -- the summary -------------------------------------------------------------------------
def _row(model: str, f: Formula, figures: dict[str, float | None]) -> dict[str, Any]:
    return {"model": model, "formula": f.label, "alpha": f.alpha,
            **{k: None if v is None else round(v, 4) for k, v in figures.items()}}


def make_summary(inputs: Inputs, results: Sequence[ModelResult]) -> dict[str, Any]:
    """Every figure, by model and formula, plus the prompt check and its warnings."""
    r = inputs.cfg.reward
    summary: dict[str, Any] = {
        "env_id": inputs.cfg.env.id, "goal_prompts": list(r.goal_prompts),
        "baseline_prompts": list(r.baseline_prompts), "models": [m.spec.label for m in results],
        "kinds": {m.spec.label: m.kind for m in results},
        "formulas": [{"name": f.name, "alpha": f.alpha, "spec": f.spec}
                     for f in inputs.formulas]}
    if inputs.sweep is not None and not inputs.check_only:
        summary["landscape"] = landscape_summary(inputs, results)
    if inputs.frameset is not None and not inputs.check_only:
        summary["frames"] = frames_summary(inputs, results)
    if any(m.rollout is not None for m in results):
        summary["rollout"] = {"frames": ROLLOUT_FRAMES, "stride": ROLLOUT_STRIDE, "note": (
            "the prompt check ran on random-policy frames: the scene has no goal-variable "
            "sweep and no --frames were given")}
    summary["prompt_check"] = {
        "threshold": PROMPT_CHECK_RHO, "unrelated_prompt": UNRELATED_PROMPT,
        "results": [{"model": m.spec.label, **c} for m in results for c in m.prompt_check]}
    summary["warnings"] = prompt_warnings(results)
    return summary


def landscape_summary(inputs: Inputs, results: Sequence[ModelResult]) -> dict[str, Any]:
    sweep, values = inputs.sweep, inputs.values
    goalness, in_goal = sweep.goalness(values), sweep.in_goal(values)
    rows = [_row(m.spec.label, f, landscape_metrics(rewards, goalness, in_goal))
            for m in results for f, rewards in zip(m.formulas, m.landscape, strict=True)]
    return {"variable": sweep.variable, "spearman_against": sweep.target,
            "goal_region": sweep.region, "points": len(values),
            "goal_points": int(in_goal.sum()),
            "epic_against": "the ground-truth reward: 1 in the goal region, 0 outside",
            "results": rows}


def frames_summary(inputs: Inputs, results: Sequence[ModelResult]) -> dict[str, Any]:
    fs = inputs.frameset
    rows = [_row(m.spec.label, f, labelled_metrics(rewards, fs.success, fs.score))
            for m in results for f, rewards in zip(m.formulas, m.labelled, strict=True)]
    return {"dir": str(fs.root), "frames": len(fs),
            "labels": [k for k in ("success", "score") if getattr(fs, k) is not None],
            "spearman_and_epic_against": "score" if fs.score is not None else "success",
            "goal_frames": None if fs.success is None else int(fs.success.sum()),
            "results": rows}


def prompt_warnings(results: Sequence[ModelResult]) -> list[str]:
    out = []
    for m in results:
        for c in m.prompt_check:
            if c["ignored"]:
                out.append(
                    f"{m.spec.label} ranks the frames almost the same for the goal prompts and "
                    f"the {c['control']} prompt {c['prompts'][0]!r} (Spearman "
                    f"{c['spearman']:.3f} >= {PROMPT_CHECK_RHO}): its reward follows how the "
                    "frames look in general more than what the goal prompt says. Check the "
                    "landscape or labelled-frame figures before training; try other wording or "
                    "a larger model.")
    return out


# -- files -------------------------------------------------------------------------------
def slug(label: str) -> str:
    """A model label as a file-name part: ``open_clip:vlmrm-demo`` -> ``open_clip_vlmrm-demo``."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("_")


def write_outputs(tmp: Path, inputs: Inputs, results: Sequence[ModelResult],
                  summary: dict[str, Any]) -> list[str]:
    """CSVs and PNGs into ``tmp``; returns their names (summary.json is written last)."""
    files: dict[str, bytes | str] = {}
    if inputs.sweep is not None and not inputs.check_only:
        files["landscape.csv"] = landscape_csv(inputs, results)
        files.update(landscape_plots(inputs, results, summary))
    if inputs.frameset is not None and not inputs.check_only:
        files["frames.csv"] = frames_csv(inputs, results)
        files.update(frames_plots(inputs, results))
    for name, content in files.items():
        if isinstance(content, bytes):
            (tmp / name).write_bytes(content)
        else:
            write_text(tmp / name, content)
    return sorted(files) + ["summary.json"]


def landscape_csv(inputs: Inputs, results: Sequence[ModelResult]) -> str:
    sweep, values = inputs.sweep, inputs.values
    goalness, in_goal = sweep.goalness(values), sweep.in_goal(values)
    rows = [{"model": m.spec.label, "formula": f.label, "alpha": _blank(f.alpha),
             "value": f"{v:.6g}", "goalness": f"{g:.6g}", "in_goal": int(ok),
             "reward": f"{x:.8g}"}
            for m in results for f, rewards in zip(m.formulas, m.landscape, strict=True)
            for v, g, ok, x in zip(values, goalness, in_goal, rewards, strict=True)]
    return labels_csv(rows)


def frames_csv(inputs: Inputs, results: Sequence[ModelResult]) -> str:
    fs = inputs.frameset
    rows = [{"model": m.spec.label, "formula": f.label, "alpha": _blank(f.alpha),
             "file": path.name if path.parent == fs.root else str(path.relative_to(fs.root)),
             "success": "" if fs.success is None else int(fs.success[i]),
             "score": "" if fs.score is None else f"{fs.score[i]:.6g}",
             "reward": f"{rewards[i]:.8g}"}
            for m in results for f, rewards in zip(m.formulas, m.labelled, strict=True)
            for i, path in enumerate(fs.files)]
    return labels_csv(rows)


def _blank(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _spearman_of(summary_rows: list[dict[str, Any]], model: str, f: Formula) -> str:
    for row in summary_rows:
        if row["model"] == model and row["formula"] == f.label and row["alpha"] == f.alpha:
            rho = row["spearman"]
            return "" if rho is None else f" (rho {rho:.3f})"
    return ""


def landscape_plots(inputs: Inputs, results: Sequence[ModelResult], summary: dict[str, Any]
                    ) -> dict[str, bytes]:
    sweep, values = inputs.sweep, inputs.values
    rows = summary["landscape"]["results"]
    goal = sweep.in_goal(values)
    out = {}
    for m in results:
        label = m.spec.label
        curves = [(f.name + _spearman_of(rows, label, f), r)
                  for f, r in zip(m.formulas, m.landscape, strict=True)]
        out[f"landscape-{slug(label)}.png"] = plots.landscape(
            values, curves, sweep.goal_spans, sweep.variable, f"{label} on {inputs.cfg.env.id}")
        out[f"histogram-{slug(label)}.png"] = plots.histograms(
            [(f.name, r) for f, r in zip(m.formulas, m.landscape, strict=True)], goal,
            f"{label}: goal region vs the rest of the {sweep.variable} sweep")
    return out


def frames_plots(inputs: Inputs, results: Sequence[ModelResult]) -> dict[str, bytes]:
    fs = inputs.frameset
    if fs.success is None:
        return {}
    return {f"frames-histogram-{slug(m.spec.label)}.png": plots.histograms(
        [(f.name, r) for f, r in zip(m.formulas, m.labelled, strict=True)], fs.success,
        f"{m.spec.label}: frames labelled success vs not")
        for m in results}


# -- what the command prints ---------------------------------------------------------------
def report(summary: dict[str, Any], out: str | os.PathLike) -> str:
    """Tables of the figures, the prompt check and the files written."""
    lines = []
    for part, title in (("landscape", "goal-variable sweep"), ("frames", "labelled frames")):
        if part in summary:
            lines.append(f"{title} ({summary[part].get('variable') or summary[part]['dir']}):")
            lines += _table(summary[part]["results"])
    lines.append(f"prompt check (warns at Spearman >= {PROMPT_CHECK_RHO}):")
    for c in summary["prompt_check"]["results"]:
        rho = "undefined" if c["spearman"] is None else f"{c['spearman']:.3f}"
        verdict = "IGNORED?" if c["ignored"] else "ok"
        lines.append(f"  {c['model']}: goal vs {c['control']} {c['prompts'][0]!r}: "
                     f"rho {rho}  {verdict}")
    lines += [f"warning: {w}" for w in summary["warnings"]]
    lines.append(f"wrote {', '.join(summary['files'])} to {out} in {summary['seconds']:.1f} s")
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    keys = [k for k in ("spearman", "epic", "roc_auc", "separation") if k in rows[0]]
    mw = max(len(r["model"]) for r in rows)
    fw = max(len("formula"), *(len(r["formula"]) for r in rows))
    out = [f"  {'model':<{mw}}  {'formula':<{fw}}  {'alpha':>5}  "
           + "  ".join(f"{k:>10}" for k in keys)]
    for r in rows:
        alpha = "" if r["alpha"] is None else f"{r['alpha']:g}"
        figures = "  ".join(f"{_num(r[k]):>10}" for k in keys)
        out.append(f"  {r['model']:<{mw}}  {r['formula']:<{fw}}  {alpha:>5}  {figures}")
    return out


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"
