"""Stopping on NaN/inf: the errors, the saved evidence, and how DDP ranks agree to stop.

A non-finite reward is caught where a batch is scored, before it can reach the replay
buffer; its frames are saved under ``<run dir>/nonfinite/``. A non-finite loss is caught
after the update that produced it. Either way no checkpoint of that state is written: the
newest checkpoint on disk is the last good state (see :class:`~vlmrm.errors.NonFiniteError`).

Under DDP a problem seen on one rank must stop every rank at the same iteration (a rank
that left alone would hang the others in their next collective), so each rank records its
problem and all ranks exchange ``(kind, first step, last step)`` once per iteration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDictBase

from vlmrm.errors import NonFiniteError
from vlmrm.keys import NEXT, OBSERVATION
from vlmrm.media import as_uint8_frames, grid_image, write_npz, write_png

REWARD, LOSS = 1, 2
#: Frames shown in the picture of a bad batch (the .npz holds all of them).
MAX_PICTURED = 64


class NonFiniteBatch(NonFiniteError):
    """A non-finite value met in one batch: what (``kind``) and where (env steps)."""

    def __init__(self, message: str, kind: int, first_step: int, last_step: int) -> None:
        super().__init__(message)
        self.kind, self.first_step, self.last_step = kind, first_step, last_step


def batch_stem(first: int, last: int, rank: int) -> str:
    """File stem for the evidence of a batch: ``steps-A-B`` (``rankR-steps-A-B`` on rank R > 0)."""
    return f"{f'rank{rank}-' if rank else ''}steps-{first}-{last}"


def _steps_text(first: int, last: int, rank: int, world_size: int) -> str:
    if world_size == 1:
        return f"env steps {first}-{last}"
    return f"rank {rank}'s env steps {first}-{last} (each rank counts its own)"


def check_rewards(batch: TensorDictBase, reward_key, frames: torch.Tensor | None, first: int,
                  rank: int = 0, world_size: int = 1, evidence_dir: Path | None = None) -> None:
    """Raise :class:`NonFiniteBatch` if any reward of the scored ``batch`` is NaN or inf,
    after saving the batch's frames and rewards to ``evidence_dir``."""
    rewards = batch.get(reward_key).reshape(-1)
    bad = ~torch.isfinite(rewards)
    if not bool(bad.any()):
        return
    last = first + rewards.numel() - 1
    saved = (save_evidence(evidence_dir / batch_stem(first, last, rank), batch, reward_key,
                           frames) if evidence_dir is not None else None)
    where = (f"Its frames are in {saved[0]} (those with non-finite rewards) and {saved[1]} "
             "(the whole batch: frames, rewards, observations)." if saved and saved[0] else
             f"The batch is saved in {saved[1]}." if saved else "")
    raise NonFiniteBatch(
        f"The reward model returned a non-finite reward (NaN or inf) for {int(bad.sum())} of "
        f"the {rewards.numel()} frames of the batch of {_steps_text(first, last, rank, world_size)}: "
        f"the batch was not stored and the run stopped. {where} Check the reward model on "
        "these frames (`vlmrm render` shows what it sees; reward.precision=16 can overflow).",
        REWARD, first, last)


def save_evidence(stem: Path, batch: TensorDictBase, reward_key, frames: torch.Tensor | None
                  ) -> tuple[Path | None, Path]:
    """``<stem>.npz`` with the batch's rewards, observations and frames (when it has
    them), and ``<stem>.png`` picturing the frames whose reward is non-finite."""
    rewards = batch.get(reward_key).reshape(-1).float().cpu()
    arrays = {"rewards": rewards.numpy(),
              "observation": batch.get(OBSERVATION).reshape(len(rewards), -1).cpu().numpy(),
              "next_observation": batch.get((NEXT, OBSERVATION)).reshape(
                  len(rewards), -1).cpu().numpy()}
    picture = None
    if frames is not None:
        pixels = as_uint8_frames(frames)
        arrays["frames"] = pixels
        picture = _picture(stem.with_suffix(".png"), pixels, rewards)
    return picture, write_npz(stem.with_suffix(".npz"), **arrays)


def _picture(path: Path, pixels: np.ndarray, rewards: torch.Tensor) -> Path:
    index = torch.nonzero(~torch.isfinite(rewards)).reshape(-1)[:MAX_PICTURED].tolist()
    captions = [f"frame {i}: {rewards[i].item()}" for i in index]  # i: index in the .npz
    return write_png(path, grid_image(pixels[index], captions))


def check_losses(losses: Mapping[str, float], first: int, last: int) -> None:
    """Raise :class:`NonFiniteBatch` if any of the update's (mean) losses is NaN or inf."""
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        values = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
        raise NonFiniteBatch(
            f"The SAC update after env steps {first}-{last} produced non-finite values "
            f"({values}): the run stopped. Lower agent.learning_rate, or check the scale of "
            "the rewards.", LOSS, first, last)


def agree_to_stop(problem: NonFiniteBatch | None, world_size: int,
                  all_gather: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                  evidence_dir: Path | None = None, stop_requested: bool = False) -> bool:
    """Raise on every rank if any rank met a problem this iteration; otherwise return
    whether any rank was asked to stop (a signal). Call it at the same point of every
    iteration on all ranks (one small all-gather under DDP)."""
    if world_size == 1:
        if problem is not None:
            raise problem
        return stop_requested
    mine = [problem.kind, problem.first_step, problem.last_step] if problem else [0, 0, 0]
    mine.append(int(stop_requested))
    table = all_gather(torch.tensor(mine, device=device, dtype=torch.int64)).reshape(-1, 4)
    failed = [(rank, *row[:3]) for rank, row in enumerate(table.tolist()) if row[0]]
    if not failed:
        return bool(table[:, 3].any())
    if problem is not None:
        raise problem
    raise _seen_elsewhere(*failed[0], world_size, evidence_dir)


def _seen_elsewhere(rank: int, kind: int, first: int, last: int, world_size: int,
                    evidence_dir: Path | None) -> NonFiniteBatch:
    """What a rank without the problem reports about another rank's."""
    if kind == REWARD:
        where = (f" Its evidence is in {evidence_dir / batch_stem(first, last, rank)}.npz/.png."
                 if evidence_dir is not None else "")
        what = (f"a non-finite reward for the batch of "
                f"{_steps_text(first, last, rank, world_size)}.{where}")
    else:
        what = f"a non-finite SAC loss in the update after env steps {first}-{last}."
    return NonFiniteBatch(f"Rank {rank} met {what} The run stopped on every rank.",
                          kind, first, last)
