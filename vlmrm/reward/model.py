"""A reward model: a backend's encoders, the prompts, and the embedding-space reward formula."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from vlmrm.backends.base import RewardBackend, VideoBackend
from vlmrm.errors import ConfigError
from vlmrm.reward.formulas import PromptEmbeddings, build_reward_fn
from vlmrm.reward.seam import EmbeddingRewardModel, RewardModel
from vlmrm.reward.spec import TransformItem, resolve_transform

#: A ``reward.transform`` value: spec items as :func:`vlmrm.reward.spec.parse_transform` takes.
TransformSpec = Sequence[Mapping[str, Any] | str | TransformItem]


def embed_prompts(backend: RewardBackend, goal: Sequence[str], baseline: Sequence[str],
                  negative: Sequence[str] = ()) -> PromptEmbeddings:
    """The prompt sets' normalised embeddings (each prompt encoded once, then cached)."""
    neg = backend.encode_text(list(negative)) if negative else None
    return PromptEmbeddings.from_raw(backend.encode_text(list(goal)),
                                     backend.encode_text(list(baseline)), neg)


class VLMRewardModel(EmbeddingRewardModel):
    """Scores windows of uint8 frames ``[..., k, H, W, 3]`` -> float32 rewards ``[...]``:
    the embedding kind of :class:`~vlmrm.reward.seam.RewardModel`. With an image backend a
    window is one frame; with a video backend (X-CLIP) it is ``window`` frames (default the
    model's own count), embedded as one video.

    Prompt embeddings are computed once here; frames are scored in the backend's batches.
    ``formula`` (an ``nn.Sequential`` built from ``transform``, default the goal-baseline
    projection with ``alpha``) maps image embeddings to rewards and knows nothing of the
    backend. Its running statistics (``running_norm``) change only while ``update_stats`` is
    set (the training pipeline sets it: :func:`vlmrm.run.build.make_data`) and the model
    is not :meth:`frozen`: evaluation episodes and videos score inside ``frozen()``, and
    ``play``, ``render`` and ``evaluate-reward`` never set ``update_stats``.
    """

    def __init__(self, backend: RewardBackend, goal_prompts: Sequence[str],
                 baseline_prompts: Sequence[str], alpha: float = 0.0, *,
                 transform: TransformSpec | None = None,
                 negative_prompts: Sequence[str] = (), window: int | None = None) -> None:
        self.frames_needed = _frames_needed(backend, window)
        spec = resolve_transform(alpha, transform)  # alpha is the goal_baseline shorthand
        self.backend = backend
        self.goal_prompts = list(goal_prompts)
        self.baseline_prompts = list(baseline_prompts)
        backend.check_prompts(self.goal_prompts, "reward.goal_prompts")
        backend.check_prompts(self.baseline_prompts, "reward.baseline_prompts")
        self.negative_prompts = list(negative_prompts)
        backend.check_prompts(self.negative_prompts, "reward.negative_prompts")
        self.prompts = embed_prompts(backend, self.goal_prompts, self.baseline_prompts,
                                     self.negative_prompts)
        self.formula = build_reward_fn(spec, self.prompts).to(backend.device).eval()
        self.frames_scored = 0
        #: Whether scoring folds the frames into the formula's running statistics.
        self.update_stats = False
        self._frozen = 0  # depth of nested frozen() blocks

    def to(self, device: str | torch.device) -> VLMRewardModel:
        self.backend.to(device)
        self.formula.to(self.backend.device)
        return self

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the image encoder's input: envs render at this size."""
        return self.backend.image_size

    def model_view(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, h, w, 3]``: the resized and cropped picture the image encoder receives
        (before normalisation)."""
        return self.backend.preprocessor.resize_frames(frames)

    @property
    def resize_frames(self):
        return self.backend.preprocessor.resize_frames

    def encode_images(self, frames: torch.Tensor) -> torch.Tensor:
        return self.backend.encode_images(frames)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.backend.encode_text(list(prompts))

    @property
    def embed_dim(self) -> int:
        return self.backend.embed_dim

    def state_dict(self) -> dict[str, Any]:
        """The formula's running statistics (empty for stateless chains)."""
        return self.formula.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.formula.load_state_dict(state)

    def encode_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[N, D]`` of windows ``[N, k, H, W, 3]``: a video backend's video
        embeddings, or (k == 1) the image embeddings of the frames."""
        if isinstance(self.backend, VideoBackend):
            return self.backend.encode_videos(windows)
        return super().encode_windows(windows)

    @torch.inference_mode()
    def score(self, windows: torch.Tensor) -> torch.Tensor:
        """Rewards ``[...]`` of windows ``[..., frames_needed, H, W, 3]``; with
        ``update_stats`` set and not :meth:`frozen`, they first update the formula's
        running statistics."""
        if windows.shape[-4] != self.frames_needed:
            raise ValueError(f"expected windows [..., {self.frames_needed}, H, W, 3], got "
                             f"shape {tuple(windows.shape)}")
        flat = windows.reshape(-1, *windows.shape[-4:])
        return self.rewards(self.encode_windows(flat), windows.shape[:-4], windows.device)

    @torch.inference_mode()
    def rewards(self, embeddings: torch.Tensor, lead: torch.Size | tuple[int, ...] = (),
                device: torch.device | str = "cpu") -> torch.Tensor:
        """The formula on image embeddings ``[N, D]`` (from ``backend.encode_images``):
        rewards shaped ``lead`` on ``device``, running statistics as :meth:`__call__` moves
        them. Streamed scoring (:mod:`vlmrm.collect.stream`) encodes first and calls this last."""
        self.formula.train(self.moves_stats)
        try:
            rewards = self.formula(embeddings)
        finally:
            self.formula.eval()
        self.frames_scored += embeddings.shape[0]
        return rewards.reshape(lead).to(device)


def _frames_needed(backend: RewardBackend, window: int | None) -> int:
    if isinstance(backend, VideoBackend):
        return backend.check_window(window)
    if window not in (None, 1):
        raise ConfigError(f"reward.window={window}: the {backend.kind} backend "
                          f"{backend.name!r} scores one frame per reward. Use "
                          "reward.window=null, or a video backend (`vlmrm backends`).")
    return 1


def input_size(reward_model: RewardModel | None) -> tuple[int, int] | None:
    """The render size a reward model wants; None (the env's own) without one."""
    return None if reward_model is None else reward_model.image_size
