"""The judge kind of reward model: a generative VLM asked a question about each frame.

A judge formula maps the log-probabilities of its answer tokens as the next token
(``[B, C]``, from :meth:`vlmrm.backends.judge_base.JudgeBackend.log_probs`) to rewards
``[B]``; it names its answers and its default question. They are registered in
:mod:`vlmrm.reward.spec` (``yes_no``, ``progress``) and start a ``reward.transform`` chain
of a judge backend, before any scalar transforms (``threshold``, ``running_norm``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vlmrm.backends.judge_base import JudgeBackend
from vlmrm.errors import ConfigError
from vlmrm.reward.seam import RewardModel
from vlmrm.reward.spec import FORMULAS, MIX, TransformItem, parse_transform, resolve_transform


class YesNo(nn.Module):
    """``log P("Yes") - log P("No")`` for the next token: the log-odds of "Yes" against "No"
    (SuccessVQA-style success detection, as a dense reward)."""

    answers = ("Yes", "No")
    question = "Does this image show {goal}? Answer yes or no."

    def forward(self, log_probs: torch.Tensor) -> torch.Tensor:
        return log_probs[..., 0] - log_probs[..., 1]


class Progress(nn.Module):
    """Expected digit ``E[d] / 9`` for ``d`` in 0-9, the next token's probabilities of the
    ten digit tokens renormalised over the ten (progress estimation, as GVL or RoboReward
    ask for it): in [0, 1]."""

    answers = tuple("0123456789")
    question = "How far along is {goal}, from 0 to 9? Answer with one digit."

    def forward(self, log_probs: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(log_probs, dim=-1)
        digits = torch.arange(10, dtype=p.dtype, device=p.device)
        return (p * digits).sum(-1) / 9.0


class JudgeRewardModel(RewardModel):
    """Scores uint8 frames with a judge backend: one frame per reward.

    Each goal prompt makes one question (``question``, default the formula's own, with
    ``{goal}`` replaced); the formula's rewards of the questions are averaged, then the
    chain's scalar transforms apply. Their running statistics (``running_norm``) move only
    while ``update_stats`` is set and the model is not :meth:`frozen`, and are its
    ``state_dict``, as for :class:`vlmrm.reward.model.VLMRewardModel`.
    """

    def __init__(self, backend: JudgeBackend, goal_prompts: Sequence[str], *,
                 transform: Sequence[Mapping[str, Any] | str | TransformItem] | None = None,
                 question: str | None = None) -> None:
        self.backend = backend
        self.goal_prompts = list(goal_prompts)
        if not self.goal_prompts:
            raise ConfigError("reward.goal_prompts is empty: a judge asks about each goal "
                              "prompt; give at least one.")
        try:
            spec = resolve_transform(0.0, transform, backend.kind)
        except ValueError as err:  # e.g. goal_baseline, resolved for a plugin judge
            raise ConfigError(f"{err} (A judge plugin's reward.transform is not resolved at "
                              "load time: set it, e.g. reward.transform='[yes_no]'.)") from None
        self.formula = _build_chain(spec)
        self.formula.to(backend.device).eval()
        head = self.formula[0]
        self.answers = tuple(head.answers)
        template = head.question if question is None else question
        key = "reward.goal_prompts" if question is None else "reward.question"
        self.questions = [_ask(template, goal) for goal in self.goal_prompts]
        for q in self.questions:
            backend.check_question(q, key)
            backend.answer_ids(q, self.answers)  # refuses answers that are not one token
        self.frames_scored = 0
        self.update_stats = False
        self._frozen = 0

    @property
    def device(self) -> torch.device:
        return self.backend.device

    def to(self, device: str | torch.device) -> JudgeRewardModel:
        self.backend.to(device)
        self.formula.to(self.backend.device)
        return self

    @property
    def image_size(self) -> tuple[int, int]:
        return self.backend.image_size

    @property
    def resize_frames(self):
        return self.backend.preprocessor.resize_frames

    def model_view(self, frames: torch.Tensor) -> torch.Tensor:
        return self.backend.preprocessor.resize_frames(frames)

    def state_dict(self) -> dict[str, Any]:
        return self.formula.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.formula.load_state_dict(state)

    @torch.inference_mode()
    def score(self, windows: torch.Tensor) -> torch.Tensor:
        frames = windows.squeeze(-4)
        flat = frames.reshape(-1, *frames.shape[-3:])
        head, rest = self.formula[0], self.formula[1:]
        per_goal = [head(self.backend.log_probs(flat, q, self.answers)) for q in self.questions]
        rest.train(self.moves_stats)
        try:
            rewards = rest(torch.stack(per_goal).mean(0))
        finally:
            rest.eval()
        self.frames_scored += flat.shape[0]
        return rewards.reshape(frames.shape[:-3]).to(frames.device)


def _ask(template: str, goal: str) -> str:
    try:
        return template.format(goal=goal)
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(f"reward.question={template!r} is not a template with {{goal}} "
                          f"alone ({type(err).__name__}: {err}). Write literal braces as {{{{ "
                          "and }}.") from None


def _build_chain(spec: Sequence[Mapping[str, Any] | str | TransformItem]) -> nn.Sequential:
    modules = []
    for item in parse_transform(spec):
        if FORMULAS[item.name].kind == MIX:  # its terms are not in the frames: the Scorer adds them
            continue
        module = FORMULAS[item.name].factory()(**item.params)
        if not isinstance(module, nn.Module):
            raise TypeError(f"formula {item.name!r} built {type(module).__name__}, not a "
                            "torch.nn.Module: register_formula's build must return one.")
        modules.append(module)
    return nn.Sequential(*modules)
