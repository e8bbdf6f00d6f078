"""Scoring frames with reward models of every kind, the quality figures of each, and the
prompt check.

A model scores windows of ``frames_needed`` consecutive frames (one frame for CLIP-like
models): :func:`window_index` picks each scored frame's window from the frames of its
episode, padded with the episode's first frame as training pads it; a still picture (a
sweep state) is its own frame repeated. An embedding model (image or video) embeds each
window once, and every formula (each alpha of the goal-baseline projection, and the
config's own ``reward.transform``) is applied to the same embeddings; any other model (a
judge) is scored with its own configured formula. Formulas score with their statistics
frozen, as evaluation must.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vlmrm.config.schema import RewardConfig
from vlmrm.errors import ConfigError
from vlmrm.reward import metrics
from vlmrm.reward.formulas import PromptEmbeddings, build_reward_fn
from vlmrm.reward.seam import EmbeddingRewardModel, RewardModel
from vlmrm.reward.spec import default_transform, parse_transform, resolve_transform, without_mix

#: The prompt check warns when a control prompt ranks the frames with Spearman rho at least
#: this close to the goal prompt's ranking: for rho = 0.9 only about one frame pair in seven
#: changes order (Kendall's tau ~0.73 for a normal copula), i.e. the model ranks the frames
#: almost the same whatever the prompt says, so the reward cannot be about the goal.
PROMPT_CHECK_RHO = 0.9
#: A control prompt about something absent from every scene.
UNRELATED_PROMPT = "a photo of a bowl of fruit on a kitchen table"


@dataclass(frozen=True)
class Formula:
    """One reward formula to evaluate: a label, its alpha (goal-baseline only) and its spec."""

    label: str
    alpha: float | None
    spec: list[dict[str, Any]]

    @property
    def name(self) -> str:
        """Legend and file text, e.g. ``goal_baseline a=0.5``."""
        return self.label if self.alpha is None else f"{self.label} a={self.alpha:g}"


def describe(spec: Sequence[Any]) -> str:
    """A spec as one line, e.g. ``softmax(temperature=0.05) > threshold(value=0.5, ...)``."""
    parts = []
    for item in parse_transform(spec):
        params = ", ".join(f"{k}={v:g}" if v is not None else f"{k}=null"
                           for k, v in item.params.items())
        parts.append(f"{item.name}({params})")
    return " > ".join(parts)


def formulas_for(reward: RewardConfig, alphas: Sequence[float]) -> list[Formula]:
    """The goal-baseline projection at each alpha, plus the config's own chain
    (``reward.transform``, ``reward.alpha`` folded in) unless the sweep already holds it.
    A ``mix`` item is left out: its terms are env state, not in the frames scored here."""
    out = [Formula("goal_baseline", a, default_transform(a)) for a in alphas]
    spec = without_mix(resolve_transform(reward.alpha, reward.transform))
    if spec not in [f.spec for f in out]:
        alpha = spec[0].get("alpha") if spec[0]["name"] == "goal_baseline" else None
        out.append(Formula(describe(spec), alpha, spec))
    return out


#: Windows per call into a model: bounds the memory of gathered windows.
WINDOW_CHUNK = 256


def still_index(n: int, k: int) -> torch.Tensor:
    """``[n, k]`` frame indices: each of ``n`` still pictures is its own whole window."""
    return torch.arange(n)[:, None].expand(n, k)


def window_index(starts: Sequence[bool], k: int) -> torch.Tensor:
    """``[T, k]`` frame indices of each step's window, oldest first: steps t-k+1..t of a
    sequence whose episodes begin where ``starts`` is set, the first steps of an episode
    padded with its first frame (as :class:`vlmrm.reward.seam.FrameHistory` pads them)."""
    out, first = torch.empty(len(starts), k, dtype=torch.long), 0
    for t, start in enumerate(starts):
        first = t if start or t == 0 else first
        out[t] = torch.arange(t - k + 1, t + 1).clamp(min=first)
    return out


def _windows(frames: Sequence[np.ndarray], idx: torch.Tensor
             ) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(positions, uint8 windows ``[n, k, H, W, 3]``) in chunks of one frame size each."""
    sizes: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(idx.tolist()):
        sizes.setdefault(frames[row[-1]].shape, []).append(i)
    for index in sizes.values():
        for at in range(0, len(index), WINDOW_CHUNK):
            part = index[at:at + WINDOW_CHUNK]
            yield part, torch.from_numpy(np.stack([np.stack([frames[j] for j in idx[i].tolist()])
                                                   for i in part]))


def embed_windows(model: EmbeddingRewardModel, frames: Sequence[np.ndarray],
                  idx: torch.Tensor) -> torch.Tensor:
    """Normalised embeddings ``[N, D]`` of the windows ``idx`` ``[N, k]`` of uint8 frames:
    the image encoder's for one frame, the video encoder's (``encode_windows``) for more."""
    out = torch.empty(idx.shape[0], model.embed_dim)
    for index, windows in _windows(frames, idx):
        if windows.shape[1] == 1:
            out[index] = model.encode_images(windows[:, 0]).float().cpu()
        else:
            out[index] = model.encode_windows(windows).float().cpu()
    return out


@torch.no_grad()
def score_windows(model: RewardModel, frames: Sequence[np.ndarray], idx: torch.Tensor
                  ) -> np.ndarray:
    """A model's own rewards ``[N]`` (float64) of the windows ``idx``, statistics frozen;
    frames are first shrunk as the model has them shrunk where they are rendered."""
    out = np.empty(idx.shape[0])
    with model.frozen():
        for index, windows in _windows(frames, idx):
            if model.resize_frames is not None:
                windows = model.resize_frames(windows)
            out[index] = model.score(windows).double().cpu().numpy().reshape(-1)
    return out


@torch.no_grad()
def score(prompts: PromptEmbeddings, embeddings: torch.Tensor, formulas: Sequence[Formula]
          ) -> list[np.ndarray]:
    """Each formula's rewards ``[N]`` (float64) of the same embeddings, statistics frozen."""
    out = []
    for f in formulas:
        chain = build_reward_fn(f.spec, prompts).to(embeddings.device).eval()
        out.append(chain(embeddings).double().cpu().numpy())
    return out


def _defined(fn: Callable[..., float], *args: Any) -> float | None:
    """A metric's value, or None where it is undefined for this data (constant rewards,
    one class only), so that JSON gets ``null`` instead of NaN."""
    try:
        value = fn(*args)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def landscape_metrics(rewards: np.ndarray, goalness: np.ndarray, in_goal: np.ndarray
                      ) -> dict[str, float | None]:
    """Spearman vs goal-ness; EPIC vs the goal indicator (the ground-truth reward: 1 in the
    goal region, 0 outside, as CartPole's is); ROC-AUC and separation goal vs non-goal."""
    gt = in_goal.astype(np.float64)
    return {"spearman": _defined(metrics.spearman, rewards, goalness),
            "epic": _defined(metrics.epic_distance, rewards, gt),
            "roc_auc": _defined(metrics.roc_auc, rewards, in_goal),
            "separation": _defined(metrics.separation, rewards, in_goal)}


def labelled_metrics(rewards: np.ndarray, success: np.ndarray | None,
                     score_labels: np.ndarray | None) -> dict[str, float | None]:
    """Against a frame set's labels: EPIC and Spearman vs ``score`` (else ``success`` as
    0/1); ROC-AUC and separation vs ``success`` where given."""
    reference = score_labels if score_labels is not None else success.astype(np.float64)
    out = {"spearman": _defined(metrics.spearman, rewards, reference),
           "epic": _defined(metrics.epic_distance, rewards, reference)}
    if success is not None:
        out["roc_auc"] = _defined(metrics.roc_auc, rewards, success)
        out["separation"] = _defined(metrics.separation, rewards, success)
    return out


def control_prompts(reward: RewardConfig) -> list[tuple[str, list[str]]]:
    """(kind, prompts) the goal is checked against: its negation (``reward.negative_prompts``,
    else "not " + the first goal prompt) and an unrelated prompt."""
    negation = list(reward.negative_prompts) or [f"not {reward.goal_prompts[0]}"]
    return [("negation", negation), ("unrelated", [UNRELATED_PROMPT])]


def _similarity(model: EmbeddingRewardModel, prompts: Sequence[str], x: torch.Tensor
                ) -> np.ndarray:
    """Cosine of each frame with the prompts' mean direction: the ranking of the alpha = 0
    reward with these prompts as the goal."""
    e = model.encode_text(prompts).float().cpu()
    m = (e / e.norm(dim=-1, keepdim=True)).mean(0)
    return (x @ (m / m.norm())).double().numpy()


def similarity_ranking(model: EmbeddingRewardModel, embeddings: torch.Tensor
                       ) -> Callable[[Sequence[str]], np.ndarray]:
    """Prompts -> each embedded window's cosine with them (an embedding model's ranking)."""
    x = embeddings.float().cpu()
    return lambda prompts: _similarity(model, prompts, x)


def prompt_check(rank: Callable[[Sequence[str]], np.ndarray], reward: RewardConfig
                 ) -> list[dict[str, Any]]:
    """Spearman rho of the frames' ranking under the goal prompts vs under each control
    (``rank``: prompts -> a score per frame with those prompts as the goal); ``ignored``
    where rho >= :data:`PROMPT_CHECK_RHO`."""
    goal = rank(reward.goal_prompts)
    out = []
    for kind, prompts in control_prompts(reward):
        try:
            rho = _defined(metrics.spearman, goal, rank(prompts))
        except ConfigError:  # "not " + a goal prompt at the text encoder's length limit
            rho = None
        out.append({"control": kind, "prompts": prompts, "spearman": rho,
                    "ignored": rho is not None and rho >= PROMPT_CHECK_RHO})
    return out
