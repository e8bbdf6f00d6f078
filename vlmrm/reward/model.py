"""A reward model: a backend's encoders, the prompts, and the embedding-space reward."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vlmrm.backend import RewardBackend
from vlmrm.reward.goal_baseline import GoalBaselineReward, mean_embedding


class VLMRewardModel:
    """Scores uint8 frames ``[B, H, W, 3]`` -> float32 rewards ``[B]``.

    Prompt embeddings are computed once here; frames are scored in the backend's batches.
    """

    def __init__(self, backend: RewardBackend, goal_prompts: Sequence[str],
                 baseline_prompts: Sequence[str], alpha: float) -> None:
        self.backend = backend
        self.goal_prompts = list(goal_prompts)
        self.baseline_prompts = list(baseline_prompts)
        goal = mean_embedding(backend.encode_text(self.goal_prompts))
        baseline = mean_embedding(backend.encode_text(self.baseline_prompts))
        self.reward_fn = GoalBaselineReward(goal, baseline, alpha).to(backend.device)
        self.frames_scored = 0

    def to(self, device: str | torch.device) -> VLMRewardModel:
        self.backend.to(device)
        self.reward_fn.to(self.backend.device)
        return self

    @property
    def image_size(self) -> tuple[int, int]:
        return self.backend.image_size

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        rewards = self.reward_fn(self.backend.encode_images(flat))
        self.frames_scored += flat.shape[0]
        return rewards.reshape(lead).to(frames.device)
