"""Lightning callbacks keyed on env steps (global_step counts optimizer updates instead)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
from torchrl.envs import EnvBase

from vlmrm.envs.envstate import capture_blocker, env_state, load_env_state, restart_seed
from vlmrm.envs.factory import SeedPurpose, env_for, env_seed, episode_cap
from vlmrm.errors import NonFiniteError
from vlmrm.media import add_tensorboard_video, write_mp4
from vlmrm.reward.model import input_size
from vlmrm.reward.seam import RewardModel
from vlmrm.run.checkpoints import (
    LAST,
    nonfinite_tensors,
    optimizer_tensors,
    prune,
    remove_partials,
)
from vlmrm.run.evaluate import episode_video, run_episode
from vlmrm.sac.schedule import crossed

if TYPE_CHECKING:
    from vlmrm.run.module import SACModule


class EnvStepCheckpoint(L.Callback):
    """Save ``step-<env_steps>.ckpt`` every ``every`` env steps and ``last.ckpt`` at the end,
    keeping the newest ``keep`` step checkpoints (None keeps all).

    Only a good state is saved: the parameters and optimizer state are checked finite
    first (a non-finite state stops the run instead, see :class:`NonFiniteError`). Old
    checkpoints are pruned only after the new one is complete on disk, so the newest
    complete checkpoint always loads.
    """

    def __init__(self, dirpath: str | Path, every: int, keep: int | None = None) -> None:
        self.dirpath = Path(dirpath)
        self.every = every
        self.keep = keep
        self._saved_at = 0
        #: The newest checkpoint this run wrote (None before the first).
        self.last_saved: Path | None = None

    def on_fit_start(self, trainer: L.Trainer, module: SACModule) -> None:
        if trainer.is_global_zero:
            remove_partials(self.dirpath)

    def state_dict(self) -> dict[str, int]:
        return {"saved_at": self._saved_at}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._saved_at = state["saved_at"]

    def on_train_batch_end(self, trainer: L.Trainer, module: SACModule, *args) -> None:
        steps = module.env_steps
        if crossed(self.every, self._saved_at, steps):
            self._saved_at = steps  # before saving: the checkpoint holds this schedule
            self.save(trainer, module, f"step-{steps}.ckpt")
            if trainer.is_global_zero:
                prune(self.dirpath, self.keep)

    def on_train_end(self, trainer: L.Trainer, module: SACModule) -> None:
        self.save(trainer, module, LAST)

    def save(self, trainer: L.Trainer, module: SACModule, name: str) -> Path:
        """Write ``name`` (all ranks call this; Lightning writes on rank 0 only)."""
        # DDP keeps parameters identical on every rank, so every rank reaches the same
        # verdict here without communicating.
        bad = nonfinite_tensors([*module.state_dict().items(),
                                 *optimizer_tensors(trainer.optimizers)])
        if bad:
            raise NonFiniteError(
                f"The agent's state is non-finite at env step {module.env_steps} "
                f"({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}), so "
                f"{name} was not written. Lower agent.learning_rate, or check the reward scale.")
        path = self.dirpath / name
        module.save_data_state(self.dirpath)
        trainer.strategy.barrier("vlmrm.data_state")  # every rank's folder before the file
        trainer.save_checkpoint(path, weights_only=False)
        self.last_saved = path
        return path

    def on_exception(self, trainer: L.Trainer, module: SACModule,
                     exception: BaseException) -> None:
        if isinstance(exception, NonFiniteError):
            exception.last_good = self.last_saved
            exception.checked_checkpoints = True


class VideoRecorder(L.Callback):
    """Every ``every`` env steps, one deterministic evaluation episode (rank 0 only) goes to
    TensorBoard (tag ``eval/video``) and to ``<dirpath>/step-<env_steps>.mp4``, with each
    frame's VLM reward, ground-truth reward and success written beneath it.

    It renders in an env of its own, so training and evaluation envs keep their settings
    (a ground-truth run renders no pixels at all).
    """

    def __init__(self, dirpath: str | Path, every: int) -> None:
        self.dirpath = Path(dirpath)
        self.every = every
        self._recorded_at = 0
        self._env: EnvBase | None = None
        #: Whether the env's state can be captured (decided when it is made).
        self._exact = True
        self._restored_env: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"recorded_at": self._recorded_at,
                "env": None if self._env is None else env_state(self._env, self._exact)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._recorded_at = state["recorded_at"]
        self._restored_env = state["env"]  # applied when the env is made

    def on_train_batch_end(self, trainer: L.Trainer, module: SACModule, *args) -> None:
        steps = module.env_steps
        if crossed(self.every, self._recorded_at, steps):
            self._recorded_at = steps
            if trainer.is_global_zero:
                self.record(trainer, module)

    def record(self, trainer: L.Trainer, module: SACModule) -> Path:
        reward_model = module.data.scorer.model if module.data is not None else None
        if module.data is not None:
            module.data.pause()  # the reward model is not shared with the collection thread
        mix = module.data.scorer.mix if module.data is not None else None
        episode = run_episode(self._get_env(module, reward_model), module.actor, reward_model,
                              max_steps=episode_cap(module.cfg.env), keep_frames=True, mix=mix)
        frames = episode_video([episode], has_vlm=reward_model is not None)
        path = write_mp4(self.dirpath / f"step-{module.env_steps}.mp4", frames)
        if trainer.logger is not None and hasattr(trainer.logger.experiment, "_get_file_writer"):
            add_tensorboard_video(trainer.logger.experiment, "eval/video", frames,
                                  module.env_steps)
        return path

    def _get_env(self, module: SACModule, reward_model: RewardModel | None) -> EnvBase:
        if self._env is None:
            self._env = env_for(module.cfg, SeedPurpose.VIDEO,
                                render_size=input_size(reward_model))
            self._exact = capture_blocker(self._env) is None
            if self._restored_env is not None:  # each video is a whole episode: reseed only
                seed = env_seed(module.cfg.seed, SeedPurpose.VIDEO)
                load_env_state(self._env, self._restored_env,
                               restart_seed(seed, self._recorded_at))
                self._restored_env = None
        return self._env

    def on_train_end(self, trainer: L.Trainer, module: SACModule) -> None:
        if self._env is not None and not self._env.is_closed:
            self._env.close()
        self._env = None
