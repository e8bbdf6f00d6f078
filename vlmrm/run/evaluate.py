"""Deterministic evaluation episodes, scored by the same reward model as training, and
their captioned frames for videos."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type

from vlmrm.keys import GT_REWARD, NEXT, PIXELS, REWARD, SUCCESS
from vlmrm.media import as_uint8_frames, caption_frames
from vlmrm.reward.mix import Mix
from vlmrm.reward.seam import RewardModel, score_episode


@dataclass
class Episode:
    """Per-step records of one episode (frames only when asked for)."""

    gt_rewards: torch.Tensor
    vlm_rewards: torch.Tensor
    success: torch.Tensor | None = None
    frames: torch.Tensor | None = None
    #: The reward SAC learns from when a ``mix`` adds state terms to the VLM reward.
    mixed_rewards: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return int(self.gt_rewards.numel())

    def summary(self) -> dict[str, float]:
        out = {"gt_return": self.gt_rewards.sum().item(),
               "vlm_return": self.vlm_rewards.sum().item(), "length": float(self.length)}
        if self.success is not None:
            out["success_rate"] = self.success.float().mean().item()
        if self.mixed_rewards is not None:
            out["mixed_return"] = self.mixed_rewards.sum().item()
        return out


def mean_summary(episodes: Sequence[Episode]) -> dict[str, float]:
    """Each :meth:`Episode.summary` figure averaged over ``episodes``."""
    results = [ep.summary() for ep in episodes]
    return {k: sum(r[k] for r in results) / len(results) for k in results[0]}


@torch.no_grad()
def run_episode(env: EnvBase, policy, reward_model: RewardModel | None,
                max_steps: int = 100_000, keep_frames: bool = False,
                mix: Mix | None = None) -> Episode:
    """One greedy/mean-action episode; frames are scored in one batch at its end, and
    ``mix``'s terms added to that VLM reward as training adds them."""
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        td = env.rollout(max_steps, policy, break_when_any_done=True, auto_cast_to_device=True)
    nxt = td.get(NEXT)
    gt = nxt[REWARD].reshape(-1).float()
    frames = nxt.get(PIXELS, None)
    if reward_model is None:
        vlm = gt
    else:  # evaluation must not move the running reward statistics (running_norm)
        vlm = score_episode(reward_model, frames).reshape(-1).float().cpu()
    success = nxt.get(SUCCESS, None)
    mixed = None
    if mix is not None and reward_model is not None:
        steps = nxt.reshape(-1).select(*mix.info_keys).cpu()
        steps.set(GT_REWARD, gt.reshape(steps.shape))
        mixed = mix.add(steps, vlm)
    return Episode(gt_rewards=gt, vlm_rewards=vlm,
                   success=None if success is None else success.reshape(-1),
                   frames=frames if keep_frames else None, mixed_rewards=mixed)


def evaluate(env: EnvBase, policy, reward_model: RewardModel | None, episodes: int,
             mix: Mix | None = None) -> dict[str, float]:
    """Mean figures of ``episodes`` deterministic episodes."""
    return mean_summary([run_episode(env, policy, reward_model, mix=mix)
                         for _ in range(episodes)])


def episode_captions(episode: Episode, has_vlm: bool, prefix: str = "") -> list[list[str]]:
    """Per-frame captions: step, VLM reward, ground-truth reward, success."""
    lines = []
    for t in range(episode.length):
        first = f"{prefix}t={t + 1}"
        if has_vlm:
            first += f"  VLM {episode.vlm_rewards[t].item():.4f}"
        if has_vlm and episode.mixed_rewards is not None:
            first += f"  mixed {episode.mixed_rewards[t].item():.4f}"
        second = f"GT {episode.gt_rewards[t].item():.3f}"
        if episode.success is not None:
            second += "  success" if bool(episode.success[t]) else "  -"
        lines.append([first, second])
    return lines


def episode_video(episodes: Sequence[Episode], has_vlm: bool) -> np.ndarray:
    """All episodes' frames, captioned, one after another: uint8 ``[T, H, W, 3]``."""
    parts = []
    for k, ep in enumerate(episodes):
        if ep.frames is None:
            raise ValueError("episode has no frames: run it with keep_frames=True")
        prefix = f"ep {k + 1}  " if len(episodes) > 1 else ""
        parts.append(caption_frames(as_uint8_frames(ep.frames),
                                    episode_captions(ep, has_vlm, prefix)))
    return np.concatenate(parts)
