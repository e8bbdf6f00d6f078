"""``vlmrm fit``: small factories, then ``lightning.Trainer.fit``."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from vlmrm.callbacks import EnvStepCheckpoint, VideoRecorder
from vlmrm.config import Config, to_yaml
from vlmrm.registry import GROUND_TRUTH, make_backend
from vlmrm.reward.model import VLMRewardModel
from vlmrm.reward.transform import VLMRewardTransform
from vlmrm.rl.envs import make_base_env, make_env
from vlmrm.rl.module import SACModule
from vlmrm.rl.rollout import EpisodeTracker, Rollout, make_collector, make_replay_buffer

RUN_DIR_ENV = "VLMRM_RUN_DIR"  # shared with DDP worker processes, which re-run the command


def make_reward_model(cfg: Config, device: str | torch.device) -> VLMRewardModel | None:
    """The configured VLM reward model, or None for the ground-truth reward."""
    r = cfg.reward
    if r.backend == GROUND_TRUTH:
        return None
    backend = make_backend(r, str(device))
    return VLMRewardModel(backend, r.goal_prompts, r.baseline_prompts, r.alpha)


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


def make_rollout_factory(cfg: Config, reward_model: VLMRewardModel | None):
    """Builds envs, collector and replay buffer on the module's rank and device."""

    def factory(module: SACModule) -> Rollout:
        if reward_model is not None and cfg.reward.device == "auto":
            reward_model.to(module.device)
        size = None if reward_model is None else reward_model.image_size
        pixels = reward_model is not None
        seed = cfg.seed + 1000 * module.global_rank
        env = make_env(cfg.env, size, from_pixels=pixels, seed=seed)
        a = cfg.agent
        collector = make_collector(env, module.actor, a.train_freq * cfg.env.num_envs,
                                   a.learning_starts, module.device)
        eval_env = make_base_env(cfg.env, size, from_pixels=pixels, seed=seed + 999)
        return Rollout(
            env=env, collector=collector,
            reward=VLMRewardTransform(reward_model, drop_pixels=True),
            buffer=make_replay_buffer(a.buffer_size, a.batch_size, module.device),
            episodes=EpisodeTracker(cfg.env.num_envs), eval_env=eval_env,
        )

    return factory


def make_module(cfg: Config, reward_model: VLMRewardModel | None) -> SACModule:
    probe = make_base_env(cfg.env, None, from_pixels=False)
    obs_dim = probe.observation_spec["observation"].shape[-1]
    action_spec = probe.action_spec
    probe.close()
    return SACModule(cfg, obs_dim, action_spec, make_rollout_factory(cfg, reward_model))


def make_run_dir(cfg: Config, config_path: str | os.PathLike | None) -> Path:
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
    return callbacks


def make_trainer(cfg: Config, run_dir: Path) -> L.Trainer:
    t = cfg.trainer
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
        num_nodes=t.num_nodes, precision=t.precision,
        enable_progress_bar=t.enable_progress_bar, max_epochs=1,
        logger=TensorBoardLogger(save_dir=str(run_dir), name="", version=""),
        callbacks=make_callbacks(cfg, run_dir),
        enable_checkpointing=False, use_distributed_sampler=False,
        num_sanity_val_steps=0, default_root_dir=str(run_dir), log_every_n_steps=1,
    )


def fit(cfg: Config, config_path: str | os.PathLike | None = None) -> Path:
    """Train an agent as configured; returns the run directory."""
    if cfg.agent.num_threads:
        torch.set_num_threads(cfg.agent.num_threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # Load the reward model before anything is written: a missing model leaves no run dir.
    reward_model = make_reward_model(cfg, reward_device(cfg))
    module = make_module(cfg, reward_model)
    run_dir = make_run_dir(cfg, config_path)
    trainer = make_trainer(cfg, run_dir)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
    try:
        trainer.fit(module)
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
    return run_dir
