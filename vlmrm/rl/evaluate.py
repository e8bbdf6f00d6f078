"""Deterministic evaluation episodes, scored by the same reward model as training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type

from vlmrm.reward.model import VLMRewardModel
from vlmrm.reward.transform import SUCCESS


@dataclass
class Episode:
    """Per-step records of one episode (frames only when asked for)."""

    gt_rewards: torch.Tensor
    vlm_rewards: torch.Tensor
    success: torch.Tensor | None = None
    frames: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return int(self.gt_rewards.numel())

    def summary(self) -> dict[str, float]:
        out = {"gt_return": self.gt_rewards.sum().item(),
               "vlm_return": self.vlm_rewards.sum().item(), "length": float(self.length)}
        if self.success is not None:
            out["success_rate"] = self.success.float().mean().item()
        return out


@torch.no_grad()
def run_episode(env: EnvBase, policy, reward_model: VLMRewardModel | None,
                max_steps: int = 100_000, keep_frames: bool = False) -> Episode:
    """One greedy/mean-action episode; frames are scored in one batch at its end."""
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        td = env.rollout(max_steps, policy, break_when_any_done=True, auto_cast_to_device=True)
    nxt = td.get("next")
    gt = nxt["reward"].reshape(-1).float()
    frames = nxt.get("pixels", None)
    vlm = gt if reward_model is None else reward_model(frames).reshape(-1).float().cpu()
    success = nxt.get(SUCCESS, None)
    return Episode(gt_rewards=gt, vlm_rewards=vlm,
                   success=None if success is None else success.reshape(-1),
                   frames=frames if keep_frames else None)


def evaluate(env: EnvBase, policy, reward_model: VLMRewardModel | None, episodes: int
             ) -> dict[str, float]:
    """Mean of :meth:`Episode.summary` over ``episodes`` episodes."""
    results = [run_episode(env, policy, reward_model).summary() for _ in range(episodes)]
    return {k: sum(r[k] for r in results) / len(results) for k in results[0]}
