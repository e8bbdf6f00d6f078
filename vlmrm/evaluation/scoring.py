"""Scoring frames with reward formulas, the quality figures of each, and the prompt check.

Frames are embedded once per model; every formula (each alpha of the goal-baseline
projection, and the config's own ``reward.transform``) is then applied to the same
embeddings. Formulas score with their statistics frozen, as evaluation must.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vlmrm.config.schema import RewardConfig
from vlmrm.errors import ConfigError
from vlmrm.reward import metrics
from vlmrm.reward.formulas import PromptEmbeddings, build_reward_fn
from vlmrm.reward.seam import EmbeddingRewardModel
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


def embed_frames(model: EmbeddingRewardModel, frames: Sequence[np.ndarray]) -> torch.Tensor:
    """Normalised embeddings ``[N, D]`` of uint8 frames; frames of different sizes are
    embedded in groups of one size each."""
    out = torch.empty(len(frames), model.embed_dim)
    sizes: dict[tuple[int, ...], list[int]] = {}
    for i, frame in enumerate(frames):
        sizes.setdefault(frame.shape, []).append(i)
    for index in sizes.values():
        batch = torch.from_numpy(np.stack([frames[i] for i in index]))
        out[index] = model.encode_images(batch).float().cpu()
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


def prompt_check(model: EmbeddingRewardModel, embeddings: torch.Tensor, reward: RewardConfig
                 ) -> list[dict[str, Any]]:
    """Spearman rho of the frames' ranking under the goal prompts vs under each control;
    ``ignored`` where rho >= :data:`PROMPT_CHECK_RHO`."""
    x = embeddings.float().cpu()
    goal = _similarity(model, reward.goal_prompts, x)
    out = []
    for kind, prompts in control_prompts(reward):
        try:
            rho = _defined(metrics.spearman, goal, _similarity(model, prompts, x))
        except ConfigError:  # "not " + a goal prompt at the text encoder's length limit
            rho = None
        out.append({"control": kind, "prompts": prompts, "spearman": rho,
                    "ignored": rho is not None and rho >= PROMPT_CHECK_RHO})
    return out
