"""The abstract judge backend: a generative vision-language model asked a question per frame.

A judge does not embed: it reads one frame and a question (e.g. "Does this image show
{goal}? Answer yes or no.") and predicts the next token. Its scoring primitive,
:meth:`JudgeBackend.log_probs`, returns the log-probabilities of chosen answer tokens
("Yes"/"No", the digits) at that next position; the judge formulas
(:mod:`vlmrm.reward.judge`) turn them into rewards. It takes the same constructor keywords
as :class:`~vlmrm.backends.base.RewardBackend`, so the wiring builds both the same way.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Sequence

import torch

from vlmrm.backends.base import JUDGE, ModelSettings
from vlmrm.backends.preprocess import ImagePreprocessor
from vlmrm.errors import ConfigError


class JudgeBackend(ModelSettings, abc.ABC):
    """A generative VLM with its processor, batching and device.

    Subclasses load the model in ``__init__`` (calling ``super().__init__`` first) into
    ``self.model`` and implement :attr:`image_size`, :attr:`context_length`,
    :meth:`prompt_tokens`, :meth:`_answer_context` and :meth:`_next_token_logits`.
    """

    kind: str = JUDGE
    #: The whole model; :meth:`to` moves it.
    model: torch.nn.Module
    #: Geometry only: how frames are resized to :attr:`image_size` where they are rendered
    #: (``reward.resize`` changes its mode). Mean and std are the identity: the model's own
    #: processor normalises.
    preprocessor: ImagePreprocessor

    def __init__(self, model: str, **settings) -> None:
        super().__init__(model, **settings)
        self._answer_ids: dict[tuple[str, tuple[str, ...]], list[int]] = {}

    # -- implemented by subclasses -------------------------------------------------------
    @property
    @abc.abstractmethod
    def image_size(self) -> tuple[int, int]:
        """(height, width) envs render at for this model."""

    @property
    @abc.abstractmethod
    def context_length(self) -> int:
        """The most tokens (text and image tokens together) the language model reads."""

    @abc.abstractmethod
    def prompt_tokens(self, question: str) -> int:
        """Tokens of the rendered ``question`` with one frame at :attr:`image_size`: its
        text, the chat template's tokens and the image tokens."""

    @abc.abstractmethod
    def _answer_context(self, question: str) -> str:
        """The rendered prompt as text (image placeholders unexpanded), after which the
        answer is the next token."""

    @abc.abstractmethod
    def _next_token_logits(self, frames: torch.Tensor, question: str) -> torch.Tensor:
        """Logits ``[B, V]`` of the token after the rendered ``question`` about each of
        ``frames`` (uint8 ``[B, H, W, 3]``, at most ``batch_size``)."""

    @property
    @abc.abstractmethod
    def tokenizer(self):
        """The processor's tokenizer (answer tokens are looked up with it)."""

    # -- shared behaviour ----------------------------------------------------------------
    def check_question(self, question: str, key: str = "reward.question") -> None:
        """Refuse a question whose rendered prompt is longer than the model's context.

        Refused rather than truncated: a truncated prompt silently loses its end, where the
        answer format and the generation prompt are.
        """
        tokens = self.prompt_tokens(question)
        if tokens > self.context_length:
            raise ConfigError(
                f"{key}: the rendered question {question!r} is {tokens} tokens long with its "
                f"image tokens, but {self.name} model {self.model_name!r} reads at most "
                f"{self.context_length}. Shorten the question or the goal prompt.")

    def answer_ids(self, question: str, answers: Sequence[str]) -> list[int]:
        """The token id of each answer word as the next token after ``question``'s prompt.

        Looked up with the processor's tokenizer in context (the prompt, then the answer as
        the model would write it: after a space unless the prompt ends with whitespace), so
        "Yes" is whichever token the model writes first, with or without a leading space.
        Refused when an answer is not exactly one token there, or two answers share one.
        """
        key = (question, tuple(answers))
        if key not in self._answer_ids:
            self._answer_ids[key] = self._lookup_answers(question, list(answers))
        return self._answer_ids[key]

    def _lookup_answers(self, question: str, answers: list[str]) -> list[int]:
        context = self._answer_context(question)
        sep = "" if context[-1:].isspace() else " "
        tok = self.tokenizer
        before = tok(context, add_special_tokens=False)["input_ids"]
        ids = []
        for answer in answers:
            after = tok(context + sep + answer, add_special_tokens=False)["input_ids"]
            new = after[len(before):]
            if after[:len(before)] != before or len(new) != 1:
                pieces = tok.convert_ids_to_tokens(new)
                raise ConfigError(
                    f"The answer {answer!r} is {len(new)} tokens ({pieces}) after the prompt "
                    f"of {self.name} model {self.model_name!r}, not one: its probability is "
                    "not one next-token probability. Use a model whose tokenizer has it as "
                    "one token, or another judge formula.")
            ids.append(new[0])
        shared = {i for i in ids if ids.count(i) > 1}
        if shared:
            same = [a for a, i in zip(answers, ids, strict=True) if i in shared]
            raise ConfigError(
                f"The answers {same} start with the same token of {self.name} model "
                f"{self.model_name!r}, so the judge cannot tell them apart by the next token.")
        return ids

    @torch.inference_mode()
    def log_probs(self, frames: torch.Tensor, question: str,
                  answers: Sequence[str]) -> torch.Tensor:
        """Log-probabilities (over the whole vocabulary) of each answer's token as the next
        token after ``question`` about each frame: uint8 ``[B, H, W, 3]`` -> float32
        ``[B, len(answers)]`` on :attr:`device`, in passes of ``batch_size`` frames."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames [B, H, W, 3], got shape {tuple(frames.shape)}")
        ids = torch.tensor(self.answer_ids(question, answers), device=self.device)
        if len(frames) == 0:
            return torch.empty(0, len(ids), device=self.device)
        out = []
        for chunk in frames.split(self.batch_size):
            logits = self._next_token_logits(chunk, question).float()
            out.append(torch.log_softmax(logits, dim=-1).index_select(-1, ids))
        return torch.cat(out)

    def compile_image_encoder(self) -> None:
        """``reward.compile`` has no effect on a judge (generation-style forwards with
        varying token counts); it runs eager, and says so."""
        warnings.warn(f"reward.compile: the judge backend {self.name!r} runs eager.",
                      stacklevel=2)
