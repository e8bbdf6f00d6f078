"""Reward side: embedding-space reward math, the reward model, and its TorchRL adapter."""

from vlmrm.reward.goal_baseline import (
    GoalBaselineReward,
    goal_baseline_reward,
    mean_embedding,
    projection_matrix,
)
from vlmrm.reward.model import VLMRewardModel
from vlmrm.reward.transform import GT_REWARD, VLMRewardTransform

__all__ = [
    "GT_REWARD", "GoalBaselineReward", "VLMRewardModel", "VLMRewardTransform",
    "goal_baseline_reward", "mean_embedding", "projection_matrix",
]
