"""Reward-hacking monitor: does the VLM reward still agree with the env's ground truth?

A VLM reward can be exploited: the agent finds pictures the model scores highly without doing
the task (the paper's limitations section asks for independent monitoring). For every run
with a VLM reward, :class:`RewardMonitor` logs against env steps:

- ``monitor/vlm_gt_spearman``, every :data:`CORRELATION_EVERY` env steps: Spearman's rank
  correlation of the VLM reward with the ground-truth reward over the last
  :data:`CORRELATION_STEPS` scored env steps (a rolling window: a batch alone is often 8
  steps whose ground truth is one constant; ranking the window after every such batch cost
  the training loop 1.6 ms an iteration, measured on the quick start);
- ``monitor/vlm_return_trend`` and ``monitor/gt_return_trend``, whenever an episode ends
  once ``window`` episodes have: Spearman's rho of each return against episode order over
  the last ``window`` finished episodes (+1: rising every episode, -1: falling);
- ``monitor/hacking_suspected``: 1 when the VLM return trend is >= :data:`TREND` while the
  ground-truth trend is <= -:data:`TREND`, else 0; shown as ``hacking`` in the progress bar,
  with a logged warning when it turns on;
- every ``every`` env steps (``logging.video_every``), the batch's ``frames`` highest-VLM-reward
  frames, as the reward model sees them, in ``<dirpath>/step-<N>.png``.

Why 0.5: over 20 episodes, an independent trend-free series reaches rho >= 0.5 about 1 % of
the time, so both at once by chance is rarer still (~1e-4), while a reward being exploited
moves both returns steadily for many episodes.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch

from vlmrm.keys import GT_REWARD, NEXT, REWARD
from vlmrm.media import grid_image, write_png
from vlmrm.reward.metrics import spearman
from vlmrm.rl.data import DataPipeline
from vlmrm.rl.schedule import crossed

if TYPE_CHECKING:
    from vlmrm.rl.module import SACModule

log = logging.getLogger(__name__)

#: Env steps in the rolling window of ``monitor/vlm_gt_spearman`` (or one batch, if larger).
CORRELATION_STEPS = 1000
#: Env steps (all ranks) between two ``monitor/vlm_gt_spearman`` points.
CORRELATION_EVERY = 100
#: Trend (Spearman's rho of returns against episode order) that counts as rising / falling.
TREND = 0.5


def _rho(a, b) -> float | None:
    """Spearman's rho, None where undefined (a constant series)."""
    value = spearman(a, b)
    return None if value != value else value  # NaN


class RewardMonitor(L.Callback):
    """Watches the VLM reward against the ground truth (see the module docstring)."""

    def __init__(self, dirpath: str | Path, window: int = 20, frames: int = 8,
                 every: int = 0, correlation_every: int = CORRELATION_EVERY) -> None:
        self.dirpath = Path(dirpath)
        self.window, self.frames, self.every = window, frames, every
        self.correlation_every = correlation_every
        self.returns: deque[tuple[float, float]] = deque(maxlen=window)
        self.recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque()
        self._recent_steps = 0
        self.suspected = False

    def _data(self, module: SACModule) -> DataPipeline | None:
        """The rank's pipeline when it scores with a VLM (else nothing to watch)."""
        data = module.data
        return data if data is not None and data.reward_model is not None else None

    def on_train_start(self, trainer: L.Trainer, module: SACModule) -> None:
        data = self._data(module)
        if data is not None:
            data.watch = True
            # Frames are only copied out of the batches that will reach the next picture.
            data.keep_frames, data.keep_frames_every = self.frames, self.every

    def on_train_batch_end(self, trainer: L.Trainer, module: SACModule, *args) -> None:
        data = self._data(module)
        if data is None or data.last_scored is None:
            return
        scored, data.last_scored = data.last_scored, None
        finished, data.last_finished = data.last_finished, None
        steps = scored.numel() * trainer.world_size
        metrics = self._correlation(scored, crossed(self.correlation_every,
                                                    module.env_steps - steps, module.env_steps))
        if finished is not None:
            metrics.update(self._trends(finished, module.env_steps))
        if data.top_frames is not None:
            if trainer.is_global_zero:
                self.save_strip(data, module.env_steps)
            data.top_frames = None
        if metrics and trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=module.env_steps)
        if trainer.progress_bar_callback is not None:  # Lightning's log costs ~1 ms a call
            module.log("hacking", float(self.suspected), prog_bar=True, logger=False,
                       on_step=True, batch_size=1)

    def _correlation(self, scored, due: bool) -> dict[str, float]:
        """``monitor/vlm_gt_spearman`` over the rolling window of recent steps, when ``due``."""
        nxt = scored.get(NEXT)
        self.recent.append((nxt[REWARD].reshape(-1).float(), nxt[GT_REWARD].reshape(-1).float()))
        self._recent_steps += self.recent[-1][0].numel()
        while (len(self.recent) > 1
               and self._recent_steps - self.recent[0][0].numel() >= CORRELATION_STEPS):
            self._recent_steps -= self.recent.popleft()[0].numel()
        if not due:
            return {}
        vlm = torch.cat([v for v, _ in self.recent])
        gt = torch.cat([g for _, g in self.recent])
        rho = _rho(vlm, gt) if vlm.numel() >= 3 else None
        return {} if rho is None else {"monitor/vlm_gt_spearman": rho}

    def _trends(self, finished: dict[str, list[float]], step: int) -> dict[str, float]:
        """Return trends over the last ``window`` episodes, once an episode ends."""
        self.returns.extend(zip(finished["vlm_return"], finished["gt_return"], strict=True))
        if not finished["vlm_return"] or len(self.returns) < self.window:
            return {}
        order = list(range(len(self.returns)))
        vlm = _rho(order, [v for v, _ in self.returns])
        gt = _rho(order, [g for _, g in self.returns])
        suspected = vlm is not None and gt is not None and vlm >= TREND and gt <= -TREND
        if suspected and not self.suspected:
            log.warning(
                "Reward hacking suspected at env step %d: over the last %d episodes the VLM "
                "return rose (trend %+.2f) while the ground-truth return fell (trend %+.2f). "
                "The agent may be exploiting the reward model: look at what it scores highest "
                "(%s/step-*.png, with logging.video_every) and at the evaluation videos.",
                step, self.window, vlm, gt, self.dirpath)
        self.suspected = suspected
        out = {"monitor/hacking_suspected": float(suspected)}
        if vlm is not None:
            out["monitor/vlm_return_trend"] = vlm
        if gt is not None:
            out["monitor/gt_return_trend"] = gt
        return out

    def save_strip(self, data: DataPipeline, step: int) -> Path:
        """The kept frames as the reward model sees them, best first, captioned."""
        frames, rewards = data.top_frames
        seen = data.reward_model.model_view(frames).cpu().numpy()
        captions = [f"#{i + 1}  VLM {r:.4f}" for i, r in enumerate(rewards.tolist())]
        return write_png(self.dirpath / f"step-{step}.png",
                         grid_image(seen, captions, columns=len(captions)))
