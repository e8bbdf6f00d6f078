"""What ``vlmrm evaluate-reward`` writes: the summary of every figure by model and formula,
its CSVs and plots, and the report it prints. Computed from the results alone, so the
command can build everything before one file is written."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.config.schema import Config
from vlmrm.evaluation import plots
from vlmrm.evaluation.frameset import FrameSet, labels_csv
from vlmrm.evaluation.options import BackendSpec
from vlmrm.evaluation.scoring import (
    PROMPT_CHECK_RHO,
    UNRELATED_PROMPT,
    Formula,
    labelled_metrics,
    landscape_metrics,
)
from vlmrm.fileio import write_text
from vlmrm.scenes.sweeps import Sweep

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
