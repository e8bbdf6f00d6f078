"""``vlmrm fit``: build the parts (:mod:`vlmrm.run.build`), then ``lightning.Trainer.fit``."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only

from vlmrm.backends.registry import GROUND_TRUTH
from vlmrm.config import Config, to_yaml
from vlmrm.config.checks import check_global_split
from vlmrm.envs.envstate import RESTART_NOTE
from vlmrm.errors import ConfigError, NonFiniteError
from vlmrm.fileio import write_text
from vlmrm.interrupt import EXIT_INTERRUPTED, end_process
from vlmrm.precision import AUTO, PrecisionChoice, choose_precision, read_note
from vlmrm.quiet import quiet_third_party
from vlmrm.run.build import (
    attach_data,
    make_module,
    make_reward_model,
    make_trainer,
    reward_device,
)
from vlmrm.run.monitor import RewardMonitor
from vlmrm.run.resume import Resume
from vlmrm.run.rundir import RUN_DIR_ENV, discard_run_dir, make_run_dir, use_run_dir


@dataclass
class RunResult:
    """Where a run went and how it ended."""

    run_dir: Path
    env_steps: int
    last_eval: dict[str, float] = field(default_factory=dict)
    #: False in DDP worker processes, which should not report the run a second time.
    primary: bool = True
    #: Stopped early by SIGINT/SIGTERM, after writing last.ckpt (resume it).
    interrupted: bool = False
    #: The reward-hacking monitor's one-line summary (None: no monitor ran).
    monitor: str | None = None
    #: Whether its checkpoints hold the envs' state (else their episodes restart on resume).
    exact_envs: bool = True

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"

    def report(self) -> str:
        """What the user needs after a run: where it is, how it did, what to run next."""
        if self.interrupted:
            how = "exactly" if self.exact_envs else f"({RESTART_NOTE})"
            return (f"vlmrm: run interrupted after {self.env_steps} env steps; its checkpoint "
                    f"{self.checkpoint} holds everything needed to continue {how}:\n"
                    f"  vlmrm fit --resume {shlex.quote(str(self.run_dir))}")
        lines = [f"vlmrm: run finished after {self.env_steps} env steps: {self.run_dir}"]
        if self.last_eval:
            figures = "  ".join(f"{k.removeprefix('eval/')} {v:.3f}"
                                for k, v in sorted(self.last_eval.items()))
            lines.append(f"  last evaluation: {figures}")
        if self.monitor is not None:
            lines.append(f"  {self.monitor}")
        lines.append(f"  watch the agent: vlmrm play --checkpoint "
                     f"{shlex.quote(str(self.checkpoint))} --out episode.mp4")
        lines.append(f"  see the curves:  tensorboard --logdir {shlex.quote(str(self.run_dir))}")
        return "\n".join(lines)


def settle_precision(cfg: Config) -> tuple[Config, PrecisionChoice | None]:
    """``cfg`` with ``reward.precision=auto`` replaced by this machine's choice, which rank 0
    prints once. The run (and its checkpoints) then hold the resolved value: a resumed run
    keeps it on any machine."""
    if cfg.reward.precision != AUTO or cfg.reward.backend == GROUND_TRUTH:
        return cfg, None
    choice = choose_precision(reward_device(cfg))
    if rank_zero_only.rank == 0:
        print(choice.line(), flush=True)
    return replace(cfg, reward=replace(cfg.reward, precision=choice.value)), choice


def write_config(run_dir: Path, cfg: Config, precision: PrecisionChoice | None,
                 resumed: bool) -> None:
    """The run's config.yaml; above it, why ``auto`` chose the precision (kept on resume)."""
    path = run_dir / "config.yaml"
    note = precision.note() if precision is not None else read_note(path) if resumed else None
    write_text(path, (f"{note}\n" if note else "") + to_yaml(cfg))


def fit(cfg: Config, config_path: str | os.PathLike | None = None,
        callbacks: Sequence[L.Callback] = (), resume: Resume | None = None) -> RunResult:
    """Train an agent as configured (or continue ``resume``'s run, whose ``cfg`` is then
    the config); ``callbacks`` are added to the trainer's own.

    Raises :class:`~vlmrm.errors.NonFiniteError` when training meets a NaN/inf (on rank 0;
    DDP worker ranks, which stop at the same iteration, return quietly and leave the
    report to rank 0).
    """
    if resume is not None:
        cfg = resume.cfg
    if cfg.agent.num_threads:
        torch.set_num_threads(cfg.agent.num_threads)
    quiet_third_party()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    cfg, precision = settle_precision(cfg)
    # Load the reward model before anything is written: a missing model leaves no run dir.
    reward_model = make_reward_model(cfg)
    module = make_module(cfg)
    run_dir = make_run_dir(cfg, config_path) if resume is None else use_run_dir(resume.run_dir)
    try:
        trainer = make_trainer(cfg, run_dir, extra_callbacks=callbacks,
                               max_epochs=1 if resume is None else resume.epochs_done + 1)
        check_global_split(cfg, trainer.world_size)  # "auto" devices are known only now
    except ConfigError:
        if resume is None:
            discard_run_dir(run_dir)
        raise
    if trainer.is_global_zero:
        write_config(run_dir, cfg, precision, resumed=resume is not None)
    module.stop_request.install()  # from here on, a signal stops the run gracefully
    try:
        attach_data(module, reward_model, trainer)
        trainer.fit(module, ckpt_path=None if resume is None else resume.checkpoint)
    except NonFiniteError:
        # Lightning's launcher kills every rank when a worker exits non-zero, which could cut
        # rank 0's report short: workers leave the report (and the exit code) to rank 0.
        if trainer.is_global_zero:
            raise
        return RunResult(run_dir, module.env_steps, primary=False)
    except SystemExit:  # Lightning's answer to a KeyboardInterrupt (our second signal)
        if module.stop_request.requested:
            raise KeyboardInterrupt from None
        raise
    finally:
        module.stop_request.closing()
        os.environ.pop(RUN_DIR_ENV, None)
        if module.data is not None:  # after an error too: env worker processes must end
            module.data.close()
        module.stop_request.uninstall()  # after closing: a signal meanwhile still exits
        if module.stop_request.exiting:  # a second signal: what it waits for is closed
            if trainer.is_global_zero:  # (a DDP collective cut short by it may land here)
                print(f"vlmrm: exited without a new checkpoint. {module.stop_request.hint()}",
                      file=sys.stderr, flush=True)
            end_process(EXIT_INTERRUPTED)
    monitor = next((c.summary() for c in trainer.callbacks if isinstance(c, RewardMonitor)),
                   None)
    return RunResult(run_dir, module.env_steps, dict(module.last_eval),
                     primary=trainer.is_global_zero, interrupted=module.interrupted,
                     monitor=monitor,
                     exact_envs=module.data is None or module.data.exact_envs)
