"""SAC inside a LightningModule: collect, score with the VLM, store, update.

Lightning owns devices, precision, strategies (DDP, multi-node), checkpoints and logging;
TorchRL owns envs, collectors, the replay buffer and the SAC losses.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader
from torchrl.data import TensorSpec

from vlmrm.collect.loop import Partial
from vlmrm.collect.nonfinite import NonFiniteBatch, agree_to_stop, check_losses
from vlmrm.collect.pipeline import DataPipeline, ScoredBatch
from vlmrm.config.schema import Config
from vlmrm.interrupt import (
    WORKER_GRACE_S,
    StopRequest,
    forward_to_workers,
    stop_latency_note,
)
from vlmrm.run.evaluate import evaluate
from vlmrm.run.plan import RunPlan
from vlmrm.run.resume import resumable_checkpoint
from vlmrm.run.runstate import (
    data_dir_name,
    data_state_problem,
    load_data_state,
    load_global_rng_state,
    save_data_state,
    seed_global_rng,
)
from vlmrm.sac.agent import make_agent, make_loss
from vlmrm.sac.schedule import crossed
from vlmrm.sac.update import learner_seed, make_optimizer, make_update, replay_seed

LOSS_NAMES = {"loss_actor": "loss/actor", "loss_qvalue": "loss/critic",
              "loss_alpha": "loss/alpha", "alpha": "train/alpha", "entropy": "train/entropy"}


class SACModule(L.LightningModule):
    """One ``training_step`` = collect ``train_freq`` steps per env, then ``gradient_steps``
    updates. Metrics are logged against env steps (all ranks), not optimizer steps."""

    def __init__(self, cfg: Config, obs_dim: int, action_spec: TensorSpec) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        self.actor, qvalue = make_agent(obs_dim, action_spec, list(cfg.agent.hidden_sizes),
                                        cfg.agent.activation)
        # The loss holds the critics (and their targets); keeping `qvalue` elsewhere would
        # leave an unused parameter copy that DDP rejects.
        self.loss_module = make_loss(self.actor, qvalue, action_spec, cfg.agent)
        #: The fast update's replay generator, seeded per rank in :meth:`setup` (before a
        #: checkpoint is restored, so a resume can restore its state after).
        self.replay_generator = torch.Generator()
        # A plain object, outside the module tree: it reads the loss module's tensors and
        # owns none, so checkpoints and DDP see exactly the loss module.
        self.updater = make_update(
            self.loss_module, cfg.agent.loss_impl, cfg.agent.tau, self.replay_generator,
            compile=cfg.agent.compile)
        #: This rank's data side and the run's plan, handed over by the wiring before fit
        #: (:meth:`attach`); a module without them can act and load weights, not train.
        self.data: DataPipeline | None = None
        self.plan: RunPlan | None = None
        self.env_steps = 0
        #: Figures of the latest evaluation (``eval/...``), for the end-of-run report.
        self.last_eval: dict[str, float] = {}
        self._next_eval = cfg.agent.eval_every or None
        #: A non-finite value met this iteration (the run stops at the iteration's end).
        self._problem: NonFiniteBatch | None = None
        self._clock = time.perf_counter()
        #: The reward formula's state from a resumed checkpoint, applied once data exists.
        self._restored_formula: dict[str, Any] | None = None
        #: SIGINT/SIGTERM handling while training (see :mod:`vlmrm.interrupt`).
        self.stop_request = StopRequest()
        #: True once the run stopped early on a signal (its last.ckpt resumes it).
        self.interrupted = False
        #: ``step-N``: the data-side state folders of the checkpoint being written or
        #: restored (:mod:`vlmrm.run.runstate`).
        self.data_state_stem: str | None = None
        self._restored_rng: dict[str, Any] | None = None
        #: Seconds the latest update phase took, and whether the stop latency was checked.
        self._update_s = 0.0
        self._latency_noted = False

    def attach(self, data: DataPipeline, plan: RunPlan) -> None:
        """Train on ``data`` (this rank's envs, collection and replay buffer, built for the
        rank and device the trainer will run this module on) as ``plan`` counts."""
        self.data, self.plan = data, plan

    # -- Lightning plumbing -------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        # One optimizer with a group per part (see update.param_groups), so global_step
        # counts updates.
        a = self.cfg.agent
        return make_optimizer(self.loss_module, a.learning_rate, a.loss_impl)

    def setup(self, stage: str) -> None:
        self.replay_generator.manual_seed(replay_seed(self.cfg.seed, self.global_rank))
        if self.trainer.world_size > 1:
            # Lightning's DDP setup has just re-seeded every rank's global generators with the
            # same seed: without this the ranks would draw the same loss noise, the same
            # random-phase actions and (agent.loss_impl=torchrl) the same replay indices.
            seed_global_rng(learner_seed(self.cfg.seed, self.global_rank))

    @property
    def update_loss(self) -> nn.Module:
        """The module whose forward computes one update's losses (TorchRL's loss or the
        fast one): where hooks see every update."""
        return self.updater.loss_forward

    def train_dataloader(self) -> DataLoader:
        """One item per iteration of this epoch. A resumed run continues where its epoch
        stopped: Lightning skips the items its restored progress counts as done."""
        left = self.plan.iterations_left(self.env_steps)
        loop = self.trainer.fit_loop
        epoch = loop.epoch_progress.current
        done = loop.epoch_loop.batch_progress.current.ready if epoch.ready > epoch.completed else 0
        return DataLoader(range(done + left), batch_size=None)

    def on_fit_start(self) -> None:
        if self.data is None or self.plan is None:
            raise RuntimeError("SACModule trains on the data side the wiring attaches before "
                               "fit: see vlmrm.run.build.attach_data")
        self.stop_request.on_request = self.data.halt
        if self.stop_request.requested:  # a signal while the data side was being built
            self.data.halt()
        if self._restored_formula is not None and self.data.scorer.model is not None:
            self.data.scorer.model.load_state_dict(self._restored_formula)
        if self.data_state_stem is not None:  # resuming: the data side continues exactly
            self._load_data_state(Path(self.trainer.ckpt_path).parent)

    def on_train_start(self) -> None:
        # Lightning's own SIGTERM handler (set as fit starts) would end the run without a
        # checkpoint: ours takes over, forwarding to DDP workers as Lightning's does.
        launcher = self.trainer.strategy.launcher
        self.stop_request.forward = forward_to_workers(launcher)
        if self.global_rank > 0:
            self.stop_request.grace_s = WORKER_GRACE_S
        self.stop_request.resume_hint = self._resume_hint
        # Whoever installs uninstalls: vlmrm fit does after closing the collection; a bare
        # Trainer.fit of this module (tests, notebooks) gets its handlers back at teardown.
        self._owns_stop_request = not self.stop_request.installed
        self.stop_request.install()
        self.trainer._signal_connector.received_sigterm = False  # seen by ours already

    def on_train_end(self) -> None:
        if self.trainer.world_size > 1:
            self._check_ranks_in_sync()

    def _check_ranks_in_sync(self) -> None:
        """DDP must keep every rank's networks (targets included) identical; fail loudly if not."""
        checksum = torch.stack([p.detach().double().sum() for p in self.loss_module.parameters()]
                               + [b.double().sum() for b in self.loss_module.buffers()])
        gathered = self.all_gather(checksum)
        spread = (gathered - gathered[0]).abs().max().item()
        if spread > 0:
            raise RuntimeError(f"DDP ranks diverged: parameter checksums differ by {spread}")

    def on_fit_end(self) -> None:
        if self.data is not None:
            self.data.close()

    def teardown(self, stage: str) -> None:
        if getattr(self, "_owns_stop_request", False):
            self.stop_request.uninstall()
            self._owns_stop_request = False

    # -- checkpoints: Lightning saves the networks; each rank saves its data side ---------
    def save_data_state(self, dirpath: Path) -> None:
        """Write this rank's data side for a checkpoint at the current env step (every rank
        calls this before rank 0 writes the checkpoint file)."""
        self.data_state_stem = f"step-{self.env_steps}"
        path = dirpath / data_dir_name(self.data_state_stem, self.global_rank)
        if path.exists() and data_state_problem(path) is not None:
            shutil.rmtree(path)  # damaged before a crash this run resumed from: write it anew
        if not path.exists():  # last.ckpt at a step that has its step checkpoint too
            extra = {"next_eval": self._next_eval, "last_eval": dict(self.last_eval),
                     "replay_generator": self.replay_generator.get_state()}
            save_data_state(self.data, path, extra)

    def _load_data_state(self, dirpath: Path) -> None:
        extra, self._restored_rng = load_data_state(
            self.data, dirpath / data_dir_name(self.data_state_stem, self.global_rank))
        self._next_eval, self.last_eval = extra["next_eval"], dict(extra["last_eval"])
        self.replay_generator.set_state(extra["replay_generator"])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vlmrm"] = {"config": OmegaConf.to_container(OmegaConf.structured(self.cfg)),
                               "env_steps": self.env_steps,
                               "world_size": self.trainer.world_size,
                               "data_state": self.data_state_stem}
        reward_model = self.data.scorer.model if self.data is not None else None
        if reward_model is not None:  # running_norm's statistics (empty for stateless chains)
            checkpoint["vlmrm"]["reward_formula"] = reward_model.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("vlmrm", {})
        self.env_steps = saved.get("env_steps", 0)
        self._restored_formula = saved.get("reward_formula")
        self.data_state_stem = saved.get("data_state")

    # -- the training loop --------------------------------------------------------------
    def training_step(self, batch: int, batch_idx: int) -> None:
        if self._restored_rng is not None:  # resumed: the draws continue where they stopped
            load_global_rng_state(self._restored_rng)
            self._restored_rng = None
        data = self.data
        got = data.next_batch(self.actor, prefetch=self._may_prefetch())  # collected, scored
        if self._cut_short(got):
            return
        before = self.env_steps
        self.env_steps += got.batch.numel() * self.trainer.world_size
        # A batch with a non-finite reward is never stored (the run stops below).
        scored = self._record(data.accept, got)
        metrics = {} if scored is None else self._episode_metrics(data.store(scored))
        if self.learning_started:
            t0 = time.perf_counter()
            losses = self.update(self.cfg.agent.gradient_steps)
            self._update_s = time.perf_counter() - t0
            self._record(check_losses, losses, before + 1, self.env_steps)
            metrics.update(losses)
        # Every rank passes here once per iteration: where all ranks agree to stop, together.
        if agree_to_stop(self._problem, self.trainer.world_size, self.all_gather, self.device,
                         data.evidence_dir, self.stop_request.requested):
            self._stop_gracefully()
        now = time.perf_counter()
        metrics.update(self._rates(got, now - self._clock))
        self._note_stop_latency(got, metrics)
        self._clock = now
        if self._next_eval is not None and self.env_steps >= self._next_eval:
            metrics.update(self.run_evaluation())
            self._next_eval += self.cfg.agent.eval_every
        self._log(metrics)

    def _stop_gracefully(self) -> None:
        """Stop after this iteration's updates (last.ckpt is written as the run ends); a
        batch being collected ahead stops at its next env step or encoder pass and is saved
        as a partial batch."""
        self.data.halt()
        self.interrupted = True
        self.trainer.should_stop = True

    def _cut_short(self, got: ScoredBatch | Partial) -> bool:
        """Whether a stop cut this iteration's batch short on any rank: then every rank stops
        here, before storing or learning, with its batch (partial or whole) kept for the
        checkpoint. One small all-gather per iteration under DDP."""
        partial = isinstance(got, Partial)
        if self.trainer.world_size > 1:
            flags = self.all_gather(torch.tensor([int(partial)], device=self.device))
            if not bool(flags.any()):
                return False
        elif not partial:
            return False
        if not partial:
            self.data.hold(got)
        self.stop_request.request(self.stop_request.signal or 0)
        self._stop_gracefully()
        return True

    def _may_prefetch(self) -> bool:
        """Whether collection may run ahead into the next iteration: not when this iteration
        ends the run or writes a checkpoint. A checkpoint could save a batch in flight as
        pending, but its scoring would already have moved the reward statistics past the
        checkpoint's step (what ``vlmrm play`` loads)."""
        after = self.plan.after_next(self.env_steps)
        every = self.cfg.logging.checkpoint_every
        return (not self.plan.ends_run(self.env_steps)
                and not (every and crossed(every, self.env_steps, after)))

    def _note_stop_latency(self, got: ScoredBatch, metrics: dict[str, float]) -> None:
        """Once, on rank 0, as the first updates are measured (or the first batch, without
        scoring): say when a stop may outlast ``logging.stop_timeout_s``."""
        if self._latency_noted or not (self.learning_started or not self.data.scorer.scores):
            return
        self._latency_noted = True
        pass_s, frames, streamed = 0.0, 0, False
        if self.data.scorer.scores:
            collection = self.data.batches
            stream = getattr(collection, "stream", None)
            streamed = stream is not None
            envs = got.batch.numel() // got.batch.shape[-1]
            frames = got.batch.numel() if stream is None else stream.steps * envs
            pass_s = frames / max(metrics.get("perf/vlm_frames_per_s", 0.0), 1e-9)
        note = stop_latency_note(pass_s, frames, streamed, self._update_s,
                                 self.cfg.logging.stop_timeout_s)
        if note is not None and self.global_rank == 0:
            print(note, file=sys.stderr, flush=True)

    def _resume_hint(self) -> str:
        found = resumable_checkpoint(Path(self.trainer.default_root_dir) / "checkpoints")
        if found is None:
            return "No checkpoint to resume from exists yet."
        return (f"A resume continues from {found}: vlmrm fit --resume "
                f"{shlex.quote(self.trainer.default_root_dir)}")

    def _record(self, check: Callable[..., Any], *args: Any) -> Any:
        """``check(*args)``, keeping a :class:`NonFiniteBatch` it raises for
        :func:`agree_to_stop` instead of leaving the other DDP ranks behind."""
        try:
            return check(*args)
        except NonFiniteBatch as problem:
            self._problem = self._problem or problem
            return None

    @property
    def learning_started(self) -> bool:
        """Updates begin once more than ``learning_starts`` env steps are collected."""
        return self.plan.learning_started(self.env_steps)

    def update(self, steps: int) -> dict[str, float]:
        """``steps`` SAC updates on replay minibatches; mean losses by log name."""
        # Lightning owns the step: manual_backward (precision, DDP) and its optimizer wrapper.
        totals = self.updater.run(self.data.replay_buffer, steps, self.device,
                                  self.manual_backward, self.optimizers(),
                                  batch_size=self.plan.share.batch_size)
        if not totals:
            return {}
        # Summed on device and read in one copy: a read per update would sync the GPU each time.
        sums = torch.stack(list(totals.values())).tolist()
        return {LOSS_NAMES.get(k, f"train/{k}"): v / max(steps, 1)
                for k, v in zip(totals, sums, strict=True)}

    def run_evaluation(self) -> dict[str, float]:
        """Deterministic episodes on the eval env, logged apart from training episodes."""
        data = self.data
        if data is None or data.eval_env is None:
            return {}
        data.pause()  # the reward model is not shared with the collection thread
        result = evaluate(data.eval_env, self.actor, data.scorer.model,
                          self.cfg.agent.eval_episodes, mix=data.scorer.mix)
        self.last_eval = {f"eval/{k}": v for k, v in result.items()}
        return dict(self.last_eval)

    # -- logging ------------------------------------------------------------------------
    @staticmethod
    def _episode_metrics(finished: dict[str, list[float]]) -> dict[str, float]:
        return {f"train/episode_{k}": sum(v) / len(v) for k, v in finished.items() if v}

    def _rates(self, got: ScoredBatch, iteration_s: float) -> dict[str, float]:
        """Collection and scoring rates (where they ran: on the collection thread with
        overlap) and the iteration's, in env steps of this rank per second."""
        frames = got.batch.numel()
        out = {"perf/env_steps_per_s": frames / max(got.collect_s, 1e-9),
               "perf/iteration_env_steps_per_s": frames / max(iteration_s, 1e-9)}
        if self.data.scorer.scores:
            out["perf/vlm_frames_per_s"] = frames / max(got.score_s, 1e-9)
        return out

    def _log(self, metrics: dict[str, float]) -> None:
        metrics["env_steps"] = float(self.env_steps)
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=self.env_steps)
        if self.trainer.progress_bar_callback is None:
            return  # Lightning's log_dict costs ~1 ms an iteration: only for a bar to show
        bar = {"env_steps": float(self.env_steps)}
        for key in ("train/episode_gt_return", "train/episode_vlm_return",
                    "train/episode_mixed_return", "eval/gt_return"):
            if key in metrics:
                bar[key.split("/")[-1]] = metrics[key]
        self.log_dict(bar, prog_bar=True, logger=False, on_step=True, batch_size=1)
