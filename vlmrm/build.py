"""The wiring: small factories that turn a :class:`~vlmrm.config.Config` into the parts of a
run. Every command (``fit``, ``play``, ``render``, ...) builds through these, so they all
load reward models, envs and agents the same way."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from vlmrm.backend import RewardBackend
from vlmrm.config.schema import Config, RewardConfig
from vlmrm.registry import GROUND_TRUTH, backend_class
from vlmrm.reward.model import VLMRewardModel, input_size
from vlmrm.reward.transform import VLMRewardTransform
from vlmrm.rl.callbacks import EnvStepCheckpoint, VideoRecorder
from vlmrm.rl.data import DataPipeline, EpisodeTracker, make_collector, make_replay_buffer
from vlmrm.rl.envs import SeedOffset, env_seed, make_base_env, make_env
from vlmrm.rl.module import DataFactory, SACModule
from vlmrm.rl.monitor import RewardMonitor

#: Run directory shared with DDP worker processes, which re-run the command line.
RUN_DIR_ENV = "VLMRM_RUN_DIR"


def reward_device(cfg: Config) -> torch.device:
    """Where the reward model is built first; each rank moves it to its own device later."""
    if cfg.reward.device != "auto":
        return torch.device(cfg.reward.device)
    wants_gpu = cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    if not (wants_gpu and torch.cuda.is_available()):
        return torch.device("cpu")
    # Lightning's launcher sets LOCAL_RANK in each DDP process: load straight onto this rank's
    # GPU rather than stacking every rank's copy of a large model on GPU 0 first.
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def make_backend(cfg: RewardConfig, device: str | torch.device) -> RewardBackend:
    """The configured backend, loaded on ``device``."""
    cls = backend_class(cfg.backend)
    return cls(cfg.model, pretrained=cfg.pretrained, device=str(device),
               precision=cfg.precision, batch_size=cfg.batch_size, cache_dir=cfg.cache_dir,
               model_config=cfg.model_config)


def make_reward_model(cfg: Config, device: str | torch.device | None = None
                      ) -> VLMRewardModel | None:
    """The configured VLM reward model (on ``device``, default :func:`reward_device`), or
    None for the ground-truth reward."""
    r = cfg.reward
    if r.backend == GROUND_TRUTH:
        return None
    backend = make_backend(r, reward_device(cfg) if device is None else device)
    if r.transform is None:
        return VLMRewardModel(backend, r.goal_prompts, r.baseline_prompts, r.alpha,
                              negative_prompts=r.negative_prompts)
    return VLMRewardModel(backend, r.goal_prompts, r.baseline_prompts,
                          transform=r.transform, negative_prompts=r.negative_prompts)


def make_data_factory(cfg: Config, reward_model: VLMRewardModel | None) -> DataFactory:
    """Builds each rank's envs, collector and replay buffer on its rank and device."""

    def factory(module: SACModule) -> DataPipeline:
        if reward_model is not None and cfg.reward.device == "auto":
            reward_model.to(module.device)
        size, pixels = input_size(reward_model), reward_model is not None
        rank = module.global_rank
        env = make_env(cfg.env, size, from_pixels=pixels,
                       seed=env_seed(cfg.seed, SeedOffset.TRAIN, rank))
        a = cfg.agent
        collector = make_collector(env, module.actor, a.train_freq * cfg.env.num_envs,
                                   a.learning_starts, module.device)
        eval_env = make_base_env(cfg.env, size, from_pixels=pixels,
                                 seed=env_seed(cfg.seed, SeedOffset.EVAL, rank))
        return DataPipeline(
            batches=collector, reward_model=reward_model,
            reward_transform=VLMRewardTransform(reward_model, drop_pixels=True,
                                                update_stats=True),
            replay_buffer=make_replay_buffer(a.buffer_size, a.batch_size, module.device),
            episodes=EpisodeTracker(cfg.env.num_envs), eval_env=eval_env, envs=[env])

    return factory


def make_module(cfg: Config, reward_model: VLMRewardModel | None) -> SACModule:
    """The SAC agent, sized from the env's observation and action specs."""
    probe = make_base_env(cfg.env, None, from_pixels=False)
    obs_dim = probe.observation_spec["observation"].shape[-1]
    action_spec = probe.action_spec
    probe.close()
    return SACModule(cfg, obs_dim, action_spec, make_data_factory(cfg, reward_model))


def make_run_dir(cfg: Config, config_path: str | os.PathLike | None) -> Path:
    """``logging.output_dir/<run name>``; DDP workers reuse the launcher's choice."""
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    stem = Path(config_path).stem if config_path else "run"
    name = cfg.logging.run_name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.logging.output_dir).resolve() / name
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def make_callbacks(cfg: Config, run_dir: Path) -> list[L.Callback]:
    callbacks: list[L.Callback] = [
        EnvStepCheckpoint(run_dir / "checkpoints", cfg.logging.checkpoint_every)]
    if cfg.logging.video_every:
        callbacks.append(VideoRecorder(run_dir / "videos", cfg.logging.video_every))
    lg = cfg.logging
    if lg.monitor and cfg.reward.backend != GROUND_TRUTH:
        callbacks.append(RewardMonitor(run_dir / "monitor", lg.monitor_window,
                                       lg.monitor_frames, lg.video_every))
    return callbacks


def make_trainer(cfg: Config, run_dir: Path, extra_callbacks: Sequence[L.Callback] = ()
                 ) -> L.Trainer:
    t = cfg.trainer
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
        num_nodes=t.num_nodes, precision=t.precision,
        enable_progress_bar=t.enable_progress_bar, max_epochs=1,
        logger=TensorBoardLogger(save_dir=str(run_dir), name="", version=""),
        callbacks=[*make_callbacks(cfg, run_dir), *extra_callbacks],
        enable_checkpointing=False, use_distributed_sampler=False,
        num_sanity_val_steps=0, default_root_dir=str(run_dir), log_every_n_steps=1,
    )
