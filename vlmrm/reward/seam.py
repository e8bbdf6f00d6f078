"""The scoring seam: what collection, streaming, evaluation, the monitor and
``evaluate-reward`` know of a reward model.

A :class:`RewardModel` maps windows of consecutive frames to one reward per env step and
declares how many frames a window holds (``frames_needed``; 1 for the embedding model, whose
window is the step's own frame). :class:`Scorer` is the side the data pipeline talks to: it
keeps each env's last frames across batch ends and episode resets (:class:`FrameHistory`,
saved with a checkpoint's data state), builds the windows, writes ``reward`` (the env's own
kept as ``gt_reward``) and drops the frames. Nothing outside this module and the model's
own file changes for a new kind of model.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor

from vlmrm.keys import DONE, GT_REWARD, NEXT, PIXELS, REWARD, VLM_REWARD
from vlmrm.reward.mix import Mix


class RewardModel(abc.ABC):
    """Scores windows of consecutive uint8 frames ``[..., frames_needed, H, W, 3]`` (oldest
    first, the step's own frame last) -> float32 rewards ``[...]``, one per env step.

    Running statistics, if a model keeps any, move only while ``update_stats`` is set (the
    training pipeline sets it) and the model is not :meth:`frozen` (evaluation, videos).
    """

    #: Consecutive frames per reward; at an episode's start the window is padded with the
    #: episode's first frame.
    frames_needed: int = 1
    #: Whether scoring may move the model's running statistics (see :meth:`frozen`).
    update_stats: bool = False
    #: Frames scored so far.
    frames_scored: int = 0
    _frozen: int = 0

    @abc.abstractmethod
    def score(self, windows: Tensor) -> Tensor:
        """Rewards ``[...]`` of windows ``[..., frames_needed, H, W, 3]``."""

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(height, width) envs render at for this model; None: the env's own size."""
        return None

    @property
    def resize_frames(self) -> Callable[[Tensor], Tensor] | None:
        """Shrinks frames ``[..., H, W, 3]`` where they are rendered (picklable: a process
        collector runs it); None keeps them as rendered."""
        return None

    def model_view(self, frames: Tensor) -> Tensor:
        """uint8 ``[B, h, w, 3]``: the picture the model sees of each frame."""
        return frames

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> RewardModel:
        return self

    @contextlib.contextmanager
    def frozen(self) -> Iterator[RewardModel]:
        """Score without touching running statistics inside this block (evaluation)."""
        self._frozen += 1
        try:
            yield self
        finally:
            self._frozen -= 1

    @property
    def moves_stats(self) -> bool:
        """Whether a score now may move running statistics."""
        return self.update_stats and not self._frozen

    def state_dict(self) -> dict[str, Any]:
        """Running statistics a resumed run (and ``vlmrm play``) needs; {} without any."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, but got {sorted(state)}")

    def __call__(self, frames: Tensor) -> Tensor:
        """Rewards ``[...]`` of single frames ``[..., H, W, 3]`` (a one-frame model only; a
        longer window needs :class:`FrameHistory` or :func:`score_episode`)."""
        if self.frames_needed != 1:
            raise ValueError(f"{type(self).__name__} needs {self.frames_needed} frames per "
                             "reward: score an episode (score_episode) or a Scorer's batch")
        return self.score(frames.unsqueeze(-4))


class EmbeddingRewardModel(RewardModel):
    """The embedding kind: an image encoder, then a formula on the image embeddings. Streamed
    scoring (frames encoded while the batch is collected) and ``evaluate-reward``'s formula
    sweep use these two halves; everything else scores through :meth:`score`."""

    @abc.abstractmethod
    def encode_images(self, frames: Tensor) -> Tensor:
        """Embeddings ``[N, D]`` of uint8 frames ``[N, H, W, 3]``."""

    def encode_windows(self, windows: Tensor) -> Tensor:
        """Embeddings ``[N, D]`` of windows ``[N, k, H, W, 3]`` (``evaluate-reward``, the
        dataset, the monitor); this default covers one-frame windows."""
        if windows.shape[-4] != 1:
            raise ValueError(f"{type(self).__name__} embeds one frame per window, got shape "
                             f"{tuple(windows.shape)}")
        return self.encode_images(windows[:, 0])

    @abc.abstractmethod
    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """Embeddings ``[P, D]`` of text prompts (``evaluate-reward``'s prompt check)."""

    @property
    @abc.abstractmethod
    def embed_dim(self) -> int:
        """D, the embeddings' width."""

    @abc.abstractmethod
    def rewards(self, embeddings: Tensor, lead: torch.Size | tuple[int, ...] = (),
                device: torch.device | str = "cpu") -> Tensor:
        """The formula on embeddings ``[N, D]``: rewards shaped ``lead`` on ``device``."""


def episode_windows(frames: Tensor, k: int) -> Tensor:
    """Windows ``[T, k, H, W, 3]`` of one episode's frames ``[T, H, W, 3]``, the first ones
    padded with the episode's first frame."""
    if k == 1:
        return frames.unsqueeze(-4)
    padded = torch.cat([frames[:1].expand(k - 1, *frames.shape[1:]), frames])
    return padded.unfold(0, k, 1).movedim(-1, 1)


def score_episode(model: RewardModel, frames: Tensor) -> Tensor:
    """Rewards ``[T]`` of one whole episode's frames ``[T, H, W, 3]``, statistics frozen."""
    with model.frozen():
        return model.score(episode_windows(frames, model.frames_needed))


class FrameHistory:
    """Each env's last ``frames_needed - 1`` frames, across batch ends and episode resets.

    :meth:`windows` turns a batch's frames ``[E, T, H, W, 3]`` and episode ends ``[E, T]``
    into windows ``[E, T, k, H, W, 3]``: a step that starts an episode (the first step of
    all, or the one after a ``done``) sees only its own frame, repeated to fill the window.
    With ``k == 1`` it keeps nothing and its state is empty.
    """

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"a reward model needs at least one frame, got {k}")
        self.k = k
        #: ``[E, k - 1, H, W, 3]`` (None before the first batch).
        self.frames: Tensor | None = None
        #: ``[E]``: whether each env's next step starts an episode.
        self.starts: Tensor | None = None

    def reset(self) -> None:
        """Every env starts an episode next (envs reseeded by a resume)."""
        if self.starts is not None:
            self.starts = torch.ones_like(self.starts)

    def windows(self, frames: Tensor, done: Tensor) -> Tensor:
        if self.k == 1:
            return frames.unsqueeze(-4)
        envs, steps = frames.shape[:2]
        past, starts = self.frames, self.starts
        if past is None:
            past = frames[:, :1].expand(envs, self.k - 1, *frames.shape[2:])
            starts = torch.ones(envs, dtype=torch.bool)
        out = []
        for t in range(steps):
            now = frames[:, t:t + 1]
            fresh = now.expand_as(past)
            past = torch.where(starts.view(envs, *[1] * (past.ndim - 1)), fresh, past)
            window = torch.cat([past, now], dim=1)
            out.append(window)
            past = window[:, 1:]
            starts = done[:, t].reshape(envs).bool()
        self.frames, self.starts = past.clone(), starts.clone()
        return torch.stack(out, dim=1)

    def state_dict(self) -> dict[str, Any]:
        if self.k == 1 or self.frames is None:
            return {}
        return {"frames": self.frames.clone(), "starts": self.starts.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.frames, self.starts = state["frames"].clone(), state["starts"].clone()


class Scorer:
    """The data pipeline's side of the seam: scores collected batches ``[*env batch, T]``
    with ``model`` (None: the env's reward stays, the ground-truth baseline), keeping the
    frame history, and writes ``reward`` with the env's own kept as ``gt_reward``. With a
    ``mix`` (``reward.transform``'s last item), ``reward`` is the model's reward plus the
    mix's weighted terms, and the model's own is kept as ``vlm_reward``."""

    def __init__(self, model: RewardModel | None, mix: Mix | None = None) -> None:
        self.model = model
        self.mix = mix
        self.history = FrameHistory(1 if model is None else model.frames_needed)

    @property
    def scores(self) -> bool:
        """Whether a reward model replaces the env's reward."""
        return self.model is not None

    @property
    def encoder(self) -> Callable[[Tensor], Tensor] | None:
        """Frames -> embeddings for streamed scoring: a one-frame embedding model's, else
        None (a batch is then scored once complete: windows need the whole batch)."""
        model = self.model
        if isinstance(model, EmbeddingRewardModel) and model.frames_needed == 1:
            return model.encode_images
        return None

    def score(self, batch: TensorDictBase) -> TensorDictBase:
        """``batch`` scored (its frames dropped)."""
        if self.model is None:
            return self._write(batch, None)
        frames = batch.get((NEXT, PIXELS))
        if self.model.frames_needed == 1:  # no history: each frame is its own window
            return self._write(batch, self.model.score(frames.unsqueeze(-4)))
        return self._write(batch, self._score_windows(batch, frames))

    def _score_windows(self, batch: TensorDictBase, frames: Tensor) -> Tensor:
        lead = batch.shape  # [*env batch, T]
        per_env = (-1, lead[-1])
        done = batch.get((NEXT, DONE)).reshape(per_env)
        flat = frames.reshape(*per_env, *frames.shape[-3:])
        rewards = self.model.score(self.history.windows(flat, done))
        return rewards.reshape(lead)

    def score_embeddings(self, batch: TensorDictBase, embeddings: Tensor) -> TensorDictBase:
        """``batch`` scored from its frames' embeddings ``[*batch, D]`` (streamed; the
        embedding kind only)."""
        rewards = self.model.rewards(embeddings.reshape(-1, embeddings.shape[-1]),
                                     batch.shape, batch.device)
        return self._write(batch, rewards)

    def _write(self, batch: TensorDictBase, reward: Tensor | None) -> TensorDictBase:
        nxt = batch.get(NEXT)
        gt = nxt.get(REWARD)
        nxt.set(GT_REWARD, gt)
        if reward is not None:
            reward = reward.reshape(gt.shape).to(gt.dtype)
            if self.mix is not None:
                nxt.set(VLM_REWARD, reward)
                reward = self.mix.add(nxt, reward)
            nxt.set(REWARD, reward)
        for td in (nxt, batch):  # as VLMRewardTransform(drop_pixels=True) did
            if PIXELS in td.keys():
                del td[PIXELS]
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The frame history ({} for a one-frame model: nothing to keep)."""
        return self.history.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self.history.load_state_dict(state or {})
