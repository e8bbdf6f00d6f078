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
            trainer.save_checkpoint(self.dirpath / f"step-{steps}.ckpt", weights_only=False)
            self._saved_at = steps

    def on_train_end(self, trainer: L.Trainer, module) -> None:
        trainer.save_checkpoint(self.dirpath / "last.ckpt", weights_only=False)


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
        self._env = None

    def on_train_batch_end(self, trainer: L.Trainer, module, *args) -> None:
        steps = module.env_steps
        if steps // self.every > self._recorded_at // self.every:
            self._recorded_at = steps
            if trainer.is_global_zero:
                self.record(trainer, module)

    def record(self, trainer: L.Trainer, module) -> Path:
        from vlmrm.rl.evaluate import run_episode
        from vlmrm.video import add_tensorboard_video, episode_video, write_mp4

        score = module.rollout.reward.score if module.rollout is not None else None
        episode = run_episode(self._get_env(module, score), module.actor, score,
                              max_steps=_video_steps(module.cfg), keep_frames=True)
        frames = episode_video([episode], has_vlm=score is not None)
        path = write_mp4(self.dirpath / f"step-{module.env_steps}.mp4", frames)
        if trainer.logger is not None and hasattr(trainer.logger.experiment, "_get_file_writer"):
            add_tensorboard_video(trainer.logger.experiment, "eval/video", frames,
                                  module.env_steps)
        return path

    def _get_env(self, module, score):
        if self._env is None:
            from vlmrm.rl.envs import make_base_env

            size = None if score is None else score.image_size
            self._env = make_base_env(module.cfg.env, size, from_pixels=True,
                                      seed=module.cfg.seed + 777)
        return self._env

    def on_train_end(self, trainer: L.Trainer, module) -> None:
        if self._env is not None and not self._env.is_closed:
            self._env.close()
        self._env = None


def _video_steps(cfg) -> int:
    # Episodes without a time limit would never end: cap them at a minute of video.
    return cfg.env.episode_length or 1200
