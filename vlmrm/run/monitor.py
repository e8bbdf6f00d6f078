"""Reward-hacking monitor: does the VLM reward still agree with the env's ground truth?

A VLM reward can be exploited: the agent finds pictures the model scores highly without doing
the task (the paper's limitations section asks for independent monitoring). For every run
with a VLM reward, :class:`RewardMonitor` logs against env steps:

- ``monitor/vlm_gt_spearman``, every :data:`CORRELATION_EVERY` env steps: Spearman's rank
  correlation of the VLM reward with the ground-truth reward over the last
  :data:`CORRELATION_STEPS` scored env steps (a rolling window: a batch alone is often 8
  steps whose ground truth is one constant; ranking the window after every such batch cost
  the training loop 1.6 ms an iteration, measured on the quick start);
- ``monitor/vlm_return_trend`` and ``monitor/gt_return_trend``, whenever a point of the
  return series (below) closes once ``window`` points have: Kendall's tau of each return
  against time over the last ``window`` points (+1: rising at every point, -1: falling);
- ``monitor/hacking_suspected``: 1 when the VLM return rises while the ground-truth return
  falls, each by a trend test at false-alarm rate :data:`FALSE_ALARM`, else 0; shown as
  ``hacking`` in the progress bar, with a logged warning when it turns on. Only where the
  ground truth measures the task (see ``no_verdict``): elsewhere the verdict is never
  logged, and :meth:`RewardMonitor.summary` says why;
- every ``every`` env steps (``logging.video_every``), the batch's ``frames`` highest-VLM-reward
  frames, as the reward model sees them, in ``<dirpath>/step-<N>.png``.

Trends are taken over time. Episodes that end in the same batch end at the same time (with
the presets' 32 envs and 100-step episodes, all 32 in one step): their order, the env
index, is no time axis. So each point of the return series is the mean return of the next
``num_envs`` episodes (this rank's envs) to end, closed by the batch that completes it:
about one episode length of env time per point, so the window of ``window`` points spans
``window`` episode lengths however many envs run (32 envs, 100-step episodes ending
together: a point per batch, 20 points = 64,000 env steps; one env: a point per episode).

Why the Mann-Kendall test (:mod:`vlmrm.run.trend`) at 1e-3: with no trend, every order of
the window's points is equally likely (means of equally many episodes from one stationary
distribution), so Kendall's S against time has a law that depends on nothing else, computed
exactly: each one-sided test fires with probability at most 1e-3 per check. The verdict
needs both at once, so per check it is at most 1e-3 whatever the dependence between the
VLM and ground-truth returns, and about 1e-6 when they vary independently; over 1,000
checks (consecutive windows share all points but one, so alarms cluster) at most one
expected false check in the worst case and ~1e-3 in the independent one. A window of 20
points passes when tau >= 0.49 (S >= 94 of 190 pairs), the steady trend of a reward being
exploited; 6 points could not pass even a perfect trend (1/6! = 1.4e-3), hence
``logging.monitor_window >= 7``.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch

from vlmrm.collect.pipeline import Feed
from vlmrm.keys import GT_REWARD, NEXT, REWARD
from vlmrm.media import grid_image, write_png
from vlmrm.reward.metrics import spearman
from vlmrm.run.trend import Trend, mann_kendall
from vlmrm.sac.schedule import crossed

if TYPE_CHECKING:
    from vlmrm.run.module import SACModule

log = logging.getLogger(__name__)

#: Env steps in the rolling window of ``monitor/vlm_gt_spearman`` (or one batch, if larger).
CORRELATION_STEPS = 1000
#: Env steps (all ranks) between two ``monitor/vlm_gt_spearman`` points.
CORRELATION_EVERY = 100
#: Per check, the chance that returns with no trend pass one one-sided trend test.
FALSE_ALARM = 1e-3


def _rho(a, b) -> float | None:
    """Spearman's rho, None where undefined (a constant series)."""
    value = spearman(a, b)
    return None if value != value else value  # NaN


@dataclass
class _Point:
    """Episodes pooled into one point of the return series (sums, then their count)."""

    vlm: float = 0.0
    gt: float = 0.0
    episodes: int = 0


class ReturnTrends:
    """The return series over time and its trends (the module docstring's "over time").

    ``add`` takes the episodes one batch finished; once a point is complete (at least
    ``episodes_per_point`` episodes) and the window holds ``window`` points, it returns the
    VLM and ground-truth trends over the window, else None.
    """

    def __init__(self, window: int, episodes_per_point: int) -> None:
        self.window, self.episodes_per_point = window, episodes_per_point
        self.points: deque[tuple[float, float]] = deque(maxlen=window)
        self._open = _Point()

    def add(self, vlm_returns: list[float], gt_returns: list[float]
            ) -> tuple[Trend, Trend] | None:
        p = self._open
        p.vlm += sum(vlm_returns)
        p.gt += sum(gt_returns)
        p.episodes += len(vlm_returns)
        if p.episodes < self.episodes_per_point:
            return None
        self.points.append((p.vlm / p.episodes, p.gt / p.episodes))
        self._open = _Point()
        if len(self.points) < self.window:
            return None
        return (mann_kendall([v for v, _ in self.points]),
                mann_kendall([g for _, g in self.points]))


def no_verdict_reason(env_id: str, measures_task: bool | None) -> str | None:
    """Why the monitor gives no hacking verdict on ``env_id``, or None where it gives one.

    ``measures_task`` is ``logging.monitor_gt_measures_task``: None follows the scene's
    declaration (:data:`vlmrm.scenes.SCENES`); an env outside the scenes is trusted, since
    its own reward is the task it was written for.
    """
    from vlmrm.scenes import SCENES

    if measures_task is None:
        scene = SCENES.get(env_id)
        if scene is None or scene.gt_measures_task:
            return None
        return (f"the ground truth of {env_id} is {scene.ground_truth}, which does not measure "
                "the task (logging.monitor_gt_measures_task=true if your env's reward does)")
    if measures_task:
        return None
    return ("logging.monitor_gt_measures_task=false: the env's own reward does not measure "
            "the task")


def hacking(vlm: Trend, gt: Trend) -> bool:
    """The verdict: the VLM return rises while the ground-truth return falls, both beyond
    what :data:`FALSE_ALARM` of trend-free windows would show."""
    return vlm.p_rising <= FALSE_ALARM and gt.p_falling <= FALSE_ALARM


class RewardMonitor(L.Callback):
    """Watches the VLM reward against the ground truth (see the module docstring).

    ``no_verdict``: why the ground truth does not measure the task (then no hacking verdict
    is ever given); None where it does.
    """

    def __init__(self, dirpath: str | Path, window: int = 20, frames: int = 8,
                 every: int = 0, correlation_every: int = CORRELATION_EVERY,
                 no_verdict: str | None = None) -> None:
        self.dirpath = Path(dirpath)
        self.window, self.frames, self.every = window, frames, every
        self.correlation_every = correlation_every
        self.no_verdict = no_verdict
        self.trends = ReturnTrends(window, 1)
        self.recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque()
        self._recent_steps = 0
        self.suspected = False
        #: Trend checks made, and the env steps where the verdict turned on.
        self.checks = 0
        self.onsets: list[int] = []
        #: The scored batches, from this run's data pipeline (None: nothing is scored).
        self.feed: Feed | None = None

    def on_train_start(self, trainer: L.Trainer, module: SACModule) -> None:
        data = module.data
        # Frames are only copied out of the batches that will reach the next picture.
        self.feed = None if data is None else data.subscribe(self.frames, self.every)
        if self.feed is not None:
            self.start(self.feed.num_envs)

    def start(self, num_envs: int) -> None:
        """A fresh return series whose points pool ``num_envs`` episodes (the rank's envs)."""
        self.trends = ReturnTrends(self.window, num_envs)

    def on_train_batch_end(self, trainer: L.Trainer, module: SACModule, *args) -> None:
        if self.feed is None or self.feed.scored is None:
            return
        scored, finished, top = self.feed.take()
        steps = scored.numel() * trainer.world_size
        metrics = self._correlation(scored, crossed(self.correlation_every,
                                                    module.env_steps - steps, module.env_steps))
        if finished is not None and finished["vlm_return"]:
            metrics.update(self.observe_episodes(finished, module.env_steps))
        if top is not None and trainer.is_global_zero:
            self.save_strip(top, module.env_steps)
        if metrics and trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=module.env_steps)
        # Lightning's log costs ~1 ms a call; no flag at all where there is no verdict.
        if trainer.progress_bar_callback is not None and self.no_verdict is None:
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

    def observe_episodes(self, finished: dict[str, list[float]], step: int) -> dict[str, float]:
        """The return trends (and verdict) to log for the episodes a batch finished at env
        step ``step``: none until a point closes a full window."""
        found = self.trends.add(finished["vlm_return"], finished["gt_return"])
        if found is None:
            return {}
        vlm, gt = found
        self.checks += 1
        out = {f"monitor/{name}_return_trend": trend.tau
               for name, trend in (("vlm", vlm), ("gt", gt)) if trend.tau is not None}
        if self.no_verdict is not None:
            return out
        suspected = hacking(vlm, gt)
        if suspected and not self.suspected:
            self.onsets.append(step)
            log.warning(
                "Reward hacking suspected at env step %d: over the last %d points (each the "
                "mean return of %d episodes) the VLM return rose (Kendall's tau %+.2f, "
                "p=%.1g) while the ground-truth return fell (tau %+.2f, p=%.1g). The agent may "
                "be exploiting the reward model: look at what it scores highest "
                "(%s/step-*.png, with logging.video_every) and at the evaluation videos.",
                step, self.window, self.trends.episodes_per_point, vlm.tau or 0.0,
                vlm.p_rising, gt.tau or 0.0, gt.p_falling, self.dirpath)
        self.suspected = suspected
        out["monitor/hacking_suspected"] = float(suspected)
        return out

    def summary(self) -> str:
        """One line for the run's report: the verdict, or why there is none."""
        if self.no_verdict is not None:
            return (f"reward-hacking monitor: no verdict, {self.no_verdict}; its "
                    "monitor/* trends compare the VLM reward with that reward only")
        if self.onsets:
            steps = ", ".join(map(str, self.onsets))
            return (f"reward-hacking monitor: hacking suspected from env step(s) {steps}; "
                    f"see {self.dirpath}/step-*.png and the evaluation videos")
        if not self.checks:
            return ("reward-hacking monitor: no verdict yet, fewer than "
                    f"{self.window} x {self.trends.episodes_per_point} episodes finished")
        return (f"reward-hacking monitor: no hacking suspected ({self.checks} checks of "
                f"{self.window}-point return trends)")

    def save_strip(self, top: tuple[torch.Tensor, torch.Tensor], step: int) -> Path:
        """The kept frames ``top`` (frames, rewards) as the reward model sees them, best
        first, captioned."""
        frames, rewards = top
        seen = self.feed.model_view(frames).cpu().numpy()
        captions = [f"#{i + 1}  VLM {r:.4f}" for i, r in enumerate(rewards.tolist())]
        return write_png(self.dirpath / f"step-{step}.png",
                         grid_image(seen, captions, columns=len(captions)))
