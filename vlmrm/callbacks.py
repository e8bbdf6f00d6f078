"""Lightning callbacks keyed on env steps (global_step counts optimizer updates instead)."""

from __future__ import annotations

from pathlib import Path

import lightning as L


class EnvStepCheckpoint(L.Callback):
    """Save ``step-<env_steps>.ckpt`` every ``every`` env steps and ``last.ckpt`` at the end."""

    def __init__(self, dirpath: str | Path, every: int) -> None:
        self.dirpath = Path(dirpath)
        self.every = every
        self._saved_at = 0

    def on_train_batch_end(self, trainer: L.Trainer, module, *args) -> None:
        steps = module.env_steps
        if steps // self.every > self._saved_at // self.every:
            trainer.save_checkpoint(self.dirpath / f"step-{steps}.ckpt")
            self._saved_at = steps

    def on_train_end(self, trainer: L.Trainer, module) -> None:
        trainer.save_checkpoint(self.dirpath / "last.ckpt")
