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
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from vlmrm.backends.base import EMBEDDING, JUDGE, VIDEO
from vlmrm.backends.registry import backend_entry
from vlmrm.commands.render import random_rollout
from vlmrm.config import Config
from vlmrm.config.schema import RewardConfig
from vlmrm.envs.factory import make_gym_env
from vlmrm.evaluation.frameset import FrameSet
from vlmrm.evaluation.options import BackendSpec
from vlmrm.evaluation.report import (
    ROLLOUT_FRAMES,
    ROLLOUT_STRIDE,
    Inputs,
    ModelResult,
    make_summary,
    write_outputs,
)
from vlmrm.evaluation.scoring import (
    Formula,
    embed_windows,
    formulas_for,
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
