"""``vlmrm fit``: build the parts (:mod:`vlmrm.build`), then ``lightning.Trainer.fit``."""

from __future__ import annotations

import logging
import os
import shlex
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch

from vlmrm.build import (
    RUN_DIR_ENV,
    discard_run_dir,
    make_module,
    make_reward_model,
    make_run_dir,
    make_trainer,
    use_run_dir,
)
from vlmrm.config import Config, to_yaml
from vlmrm.config.checks import check_global_split
from vlmrm.errors import ConfigError, NonFiniteError
from vlmrm.fileio import write_text
from vlmrm.resume import Resume
from vlmrm.rl.interrupt import EXIT_INTERRUPTED, end_process


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

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"

    def report(self) -> str:
        """What the user needs after a run: where it is, how it did, what to run next."""
        if self.interrupted:
            return (f"vlmrm: run interrupted after {self.env_steps} env steps; its checkpoint "
                    f"{self.checkpoint} holds everything needed to continue exactly:\n"
                    f"  vlmrm fit --resume {shlex.quote(str(self.run_dir))}")
        lines = [f"vlmrm: run finished after {self.env_steps} env steps: {self.run_dir}"]
        if self.last_eval:
            figures = "  ".join(f"{k.removeprefix('eval/')} {v:.3f}"
                                for k, v in sorted(self.last_eval.items()))
            lines.append(f"  last evaluation: {figures}")
        lines.append(f"  watch the agent: vlmrm play --checkpoint "
                     f"{shlex.quote(str(self.checkpoint))} --out episode.mp4")
        lines.append(f"  see the curves:  tensorboard --logdir {shlex.quote(str(self.run_dir))}")
        return "\n".join(lines)


def quiet_third_party() -> None:
    """Silence messages that are not about the user's run (tips, storage notes, deprecations
    inside libraries); warnings about the run itself still show."""
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*treespec, LeafSpec.*")
    if "RL_LOGGING_LEVEL" not in os.environ:
        logging.getLogger("torchrl").setLevel(logging.WARNING)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_drop_lightning_chatter)


def _drop_lightning_chatter(record: logging.LogRecord) -> bool:
    text = record.getMessage()
    return not ("💡 Tip" in text or "`Trainer.fit` stopped" in text)


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
    # Load the reward model before anything is written: a missing model leaves no run dir.
    reward_model = make_reward_model(cfg)
    module = make_module(cfg, reward_model)
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
        write_text(run_dir / "config.yaml", to_yaml(cfg))
    module.stop_request.install()  # from here on, a signal stops the run gracefully
    try:
        trainer.fit(module, ckpt_path=None if resume is None else resume.checkpoint)
    except NonFiniteError:
        # Lightning's launcher kills every rank when a worker exits non-zero, which could cut
        # rank 0's report short: workers leave the report (and the exit code) to rank 0.
        if trainer.is_global_zero:
            raise
        return RunResult(run_dir, module.env_steps, primary=False)
    except SystemExit:  # Lightning's answer to a KeyboardInterrupt (our second signal)
        if module.stop_request.requested:
            if trainer.is_global_zero:
                print(f"vlmrm: exited without a new checkpoint. {module.stop_request.hint()}",
                      file=sys.stderr, flush=True)
            raise KeyboardInterrupt from None
        raise
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
        if module.data is not None:  # after an error too: env worker processes must end
            module.data.close()
        module.stop_request.uninstall()  # after closing: a signal meanwhile still exits
        if module.stop_request.exiting:  # a second signal: what it waits for is closed
            end_process(EXIT_INTERRUPTED)
    return RunResult(run_dir, module.env_steps, dict(module.last_eval),
                     primary=trainer.is_global_zero, interrupted=module.interrupted)
