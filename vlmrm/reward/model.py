"""A reward model: a backend's encoders, the prompts, and the embedding-space reward formula."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vlmrm.backend import RewardBackend
from vlmrm.reward.goal_baseline import GoalBaselineReward, mean_embedding


class VLMRewardModel:
    """Scores uint8 frames ``[..., H, W, 3]`` -> float32 rewards ``[...]``.

    Prompt embeddings are computed once here; frames are scored in the backend's batches.
    ``formula`` maps image embeddings to rewards and knows nothing of the backend.
    """

    def __init__(self, backend: RewardBackend, goal_prompts: Sequence[str],
                 baseline_prompts: Sequence[str], alpha: float) -> None:
        self.backend = backend
        self.goal_prompts = list(goal_prompts)
        self.baseline_prompts = list(baseline_prompts)
        backend.check_prompts(self.goal_prompts, "reward.goal_prompts")
        backend.check_prompts(self.baseline_prompts, "reward.baseline_prompts")
        goal = mean_embedding(backend.encode_text(self.goal_prompts))
        baseline = mean_embedding(backend.encode_text(self.baseline_prompts))
        self.formula = GoalBaselineReward(goal, baseline, alpha).to(backend.device)
        self.frames_scored = 0

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

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        rewards = self.formula(self.backend.encode_images(flat))
        self.frames_scored += flat.shape[0]
        return rewards.reshape(lead).to(frames.device)


def input_size(reward_model: VLMRewardModel | None) -> tuple[int, int] | None:
    """The render size a reward model wants; None (the env's own) without one."""
    return None if reward_model is None else reward_model.image_size
