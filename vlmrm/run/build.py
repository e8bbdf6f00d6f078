"""The wiring: small factories that turn a :class:`~vlmrm.config.Config` into the parts of a
run. Every command (``fit``, ``play``, ``render``, ...) builds through these, so they all
load reward models, envs and agents the same way."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher
from torchrl.envs import EnvBase

from vlmrm.backends.base import JUDGE, RewardBackend
from vlmrm.backends.registry import GROUND_TRUTH, backend_class
from vlmrm.collect.loop import Collection, StepLoop
from vlmrm.collect.pipeline import DataPipeline, EpisodeTracker, make_replay_buffer
from vlmrm.collect.process import ProcessStepLoop
from vlmrm.collect.stream import FrameStream, steps_per_pass
from vlmrm.config.schema import Config, RewardConfig
from vlmrm.envs.envstate import capture_blocker, restart_note
from vlmrm.envs.factory import SeedPurpose, env_for, env_seed, info_keys_for, make_base_env
from vlmrm.errors import ConfigError, VLMRMError, one_paragraph
from vlmrm.precision import resolve as resolve_precision
from vlmrm.reward.mix import Mix
from vlmrm.reward.model import VLMRewardModel, input_size
from vlmrm.reward.seam import RewardModel, Scorer
from vlmrm.reward.spec import mix_terms, resolve_transform
from vlmrm.run.callbacks import EnvStepCheckpoint, VideoRecorder
from vlmrm.run.checkpoints import AtomicCheckpointIO
from vlmrm.run.module import SACModule
from vlmrm.run.monitor import RewardMonitor, no_verdict_reason
from vlmrm.run.plan import RunPlan, plan_run
from vlmrm.sac.agent import check_action_noise
from vlmrm.sac.exploration import ExplorationSampler, actor_network


def reward_device(cfg: Config) -> torch.device:
    """Where the reward model is built first; each rank moves it to its own device later."""
    if cfg.reward.device != "auto":
        return _available_device(cfg.reward.device)
    wants_gpu = cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    if not (wants_gpu and torch.cuda.is_available()):
        return torch.device("cpu")
    # Lightning's launcher sets LOCAL_RANK in each DDP process: load straight onto this rank's
    # GPU rather than stacking every rank's copy of a large model on GPU 0 first.
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def _available_device(name: str) -> torch.device:
    """``reward.device`` as a torch device, refused when this machine does not have it."""
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ConfigError(f"reward.device={name!r}, but torch sees {count} CUDA device(s) "
                              "here. Use reward.device=auto or cpu, or a device index below "
                              f"{max(count, 1)}.")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"reward.device={name!r}, but MPS is not available on this machine. "
                          "Use reward.device=auto or cpu.")
    return device


def make_backend(cfg: RewardConfig, device: str | torch.device) -> RewardBackend:
    """The configured backend, loaded on ``device``."""
    cls = backend_class(cfg.backend)
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:  # a plugin written against an older contract
        raise VLMRMError(
            f"reward.backend={cfg.backend!r} ({cls.__module__}.{cls.__qualname__}) does not "
            f"implement {', '.join(missing)} of vlmrm's backend contract "
            "(vlmrm.backends.base.RewardBackend). Update the package that provides it.")
    backend = cls(cfg.model, pretrained=cfg.pretrained, device=str(device),
                  precision=resolve_precision(cfg.precision, device), batch_size=cfg.batch_size,
                  cache_dir=cfg.cache_dir, model_config=cfg.model_config)
    if cfg.resize is not None:
        backend.preprocessor = backend.preprocessor.with_resize(cfg.resize)
    if cfg.compile:
        backend.compile_image_encoder()
    return backend


def make_reward_model(cfg: Config, device: str | torch.device | None = None
                      ) -> RewardModel | None:
    """The configured VLM reward model (on ``device``, default :func:`reward_device`), or
    None for the ground-truth reward: the kind that fits the backend's kind."""
    r = cfg.reward
    if r.backend == GROUND_TRUTH:
        return None
    backend = make_backend(r, reward_device(cfg) if device is None else device)
    if backend.kind == JUDGE:
        from vlmrm.reward.judge import JudgeRewardModel

        return JudgeRewardModel(backend, r.goal_prompts, transform=r.transform,
                                question=r.question)
    # A config built in Python has not been through load_config: resolve its alpha here.
    try:
        spec = resolve_transform(r.alpha, r.transform, backend.kind)
    except ValueError as err:  # e.g. a judge formula with a plugin's embedding backend
        raise ConfigError(str(err)) from None
    return VLMRewardModel(backend, r.goal_prompts, r.baseline_prompts, transform=spec,
                          negative_prompts=r.negative_prompts, window=r.window)


@dataclass(frozen=True)
class Placement:
    """Where this process trains: its rank among ``world_size`` ranks, its device, and the
    run dir (``trainer.default_root_dir``)."""

    rank: int
    world_size: int
    device: torch.device
    run_dir: Path


def placement(trainer: L.Trainer) -> Placement:
    """This process's place in ``trainer``'s run, known as soon as the trainer is made: its
    strategy reads the rank from the launcher's environment (Lightning's own re-run of the
    command, torchrun, SLURM) as it is built, before ``fit``."""
    return Placement(trainer.global_rank, trainer.world_size, trainer.strategy.root_device,
                     Path(trainer.default_root_dir))


def attach_data(module: SACModule, reward_model: RewardModel | None, trainer: L.Trainer
                ) -> None:
    """Build this rank's data side and the run's plan, and hand them to ``module``: what
    ``trainer.fit(module)`` trains on."""
    where = placement(trainer)
    plan = plan_run(module.cfg, where.world_size)
    module.attach(make_data(module.cfg, reward_model, module, where, plan), plan)


def make_data(cfg: Config, reward_model: RewardModel | None, module: SACModule,
              where: Placement, plan: RunPlan) -> DataPipeline:
    """The rank's envs, collector and replay buffer on its device, sized by its share of
    ``env.num_envs``, ``agent.batch_size``, ``agent.learning_starts`` and
    ``agent.buffer_size`` (they count all ranks together, so N ranks run the same experiment
    as one)."""
    if reward_model is not None and cfg.reward.device == "auto":
        reward_model.to(where.device)
    if reward_model is not None:  # training batches move running statistics; see frozen()
        reward_model.update_stats = True
    size, pixels = input_size(reward_model), reward_model is not None
    rank, share = where.rank, plan.share
    build_env = functools.partial(env_for, cfg, SeedPurpose.TRAIN, rank, render_size=size,
                                  from_pixels=pixels, num_envs=share.num_envs)
    loop = make_step_loop(cfg, module, build_env, rank, reward_model)
    collection = make_collection(cfg, loop, share.random_batches, reward_model)
    eval_env = env_for(cfg, SeedPurpose.EVAL, rank, render_size=size, from_pixels=pixels)
    blocker = capture_blocker(eval_env)  # decided here, once: workers are never asked
    if blocker is not None and rank == 0:
        print(restart_note(cfg.env.id, blocker), flush=True)
    return DataPipeline(
        batches=collection, scorer=Scorer(reward_model, make_mix(cfg)),
        replay_buffer=make_replay_buffer(share.buffer_size, where.device),
        episodes=EpisodeTracker(share.num_envs), eval_env=eval_env,
        envs=[loop.env] if isinstance(loop, StepLoop) else [],
        evidence_dir=where.run_dir / "nonfinite", rank=rank, world_size=where.world_size,
        exact_envs=blocker is None, seed=cfg.seed)


def make_mix(cfg: Config) -> Mix | None:
    """The state terms ``reward.transform``'s ``mix`` item adds to the VLM reward, if any."""
    terms = mix_terms(resolve_transform(cfg.reward.alpha, cfg.reward.transform))
    return None if terms is None else Mix(terms)


def make_step_loop(cfg: Config, module: SACModule, build_env: Callable[[], EnvBase],
                   rank: int, reward_model: RewardModel | None = None
                   ) -> StepLoop | ProcessStepLoop:
    """The rank's env step loop: here, or in a process of its own (``agent.collector``).
    Sequential collection draws from torch's global generator (as the loop always did);
    overlapped collection runs beside the learner, which draws from that generator too, so
    it gets a generator of its own (seeded per rank) to stay deterministic. Frames leave the
    loop at the reward model's input size."""
    a = cfg.agent
    seed = env_seed(cfg.seed, SeedPurpose.COLLECT, rank)
    network = actor_network(module.actor)
    resize = None if reward_model is None else reward_model.resize_frames
    if a.overlap and a.collector == "process":
        return ProcessStepLoop(build_env, network, a, seed, resize_frames=resize)
    env = build_env()
    generator = torch.Generator().manual_seed(seed) if a.overlap else torch.default_generator
    sampler = ExplorationSampler(network, env.action_spec_unbatched, a, generator)
    return StepLoop(env, sampler, resize)


def make_collection(cfg: Config, loop: StepLoop | ProcessStepLoop, random_batches: int,
                    reward_model: RewardModel | None = None) -> Collection:
    """Batches of ``agent.train_freq`` steps from ``loop``, the first ``random_batches``
    random (``agent.learning_starts``), overlapped or in turn, scored in passes or whole."""
    a = cfg.agent
    return Collection(loop, a.train_freq, random_batches, a.overlap,
                      make_stream(cfg, reward_model, loop.num_envs))


def make_stream(cfg: Config, reward_model: RewardModel | None, num_envs: int
                ) -> FrameStream | None:
    """Streamed scoring for overlapped collection (``reward.stream_frames``), or None where a
    batch is scored in one go: sequential collection, no reward model or one not of the
    embedding kind, streaming off, or a pass as long as the batch."""
    r, a = cfg.reward, cfg.agent
    encoder = Scorer(reward_model).encoder
    if not (a.overlap and encoder is not None and r.stream_frames):
        return None
    # Compiled, every pass is padded to reward.batch_size: smaller passes would waste it.
    frames = r.batch_size if r.compile else r.stream_frames
    per_pass = steps_per_pass(frames, r.batch_size, num_envs)
    if per_pass >= a.train_freq:
        return None
    return FrameStream(encoder, per_pass)


def make_module(cfg: Config) -> SACModule:
    """The SAC agent, sized from the env's observation and action specs. The probe env
    also takes one step when a ``mix`` reads info keys: a key the env does not report is a
    ConfigError here, before any worker starts."""
    probe = make_base_env(cfg.env, None, from_pixels=False, info_keys=info_keys_for(cfg))
    try:
        if info_keys_for(cfg):
            probe.rand_step(probe.reset())
        obs_dim = probe.observation_spec["observation"].shape[-1]
        action_spec = probe.action_spec
    finally:
        probe.close()
    check_buffer_fits(cfg, obs_dim, action_spec.shape.numel())
    check_action_noise(cfg.agent, action_spec)
    return SACModule(cfg, obs_dim, action_spec)


def check_buffer_fits(cfg: Config, obs_dim: int, action_dim: int) -> None:
    """Refuse a replay buffer larger than this machine's memory: it is allocated lazily,
    so it would otherwise fail (or thrash) hours into the run."""
    # Two observations, the action, reward, done and terminated, 4 bytes each at least.
    need = cfg.agent.buffer_size * (2 * obs_dim + action_dim + 3) * 4
    have = _physical_memory()
    if have is not None and need > have:
        raise ConfigError(
            f"agent.buffer_size={cfg.agent.buffer_size} needs at least {need / 2**30:.1f} GiB "
            f"for {obs_dim}-dim observations, more than this machine's {have / 2**30:.1f} GiB "
            "of memory. Lower agent.buffer_size.")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return None


def make_callbacks(cfg: Config, run_dir: Path) -> list[L.Callback]:
    """The run's own callbacks, the checkpoint last (see :func:`checkpoint_last`)."""
    log = cfg.logging
    callbacks: list[L.Callback] = []
    if log.video_every:
        callbacks.append(VideoRecorder(run_dir / "videos", log.video_every))
    if log.monitor and cfg.reward.backend != GROUND_TRUTH:
        callbacks.append(RewardMonitor(
            run_dir / "monitor", log.monitor_window, log.monitor_frames, log.video_every,
            no_verdict=no_verdict_reason(cfg.env.id, log.monitor_gt_measures_task)))
    callbacks.append(
        EnvStepCheckpoint(run_dir / "checkpoints", log.checkpoint_every, log.keep_checkpoints))
    return callbacks


def checkpoint_last(callbacks: Sequence[L.Callback]) -> list[L.Callback]:
    """``callbacks`` in order, with the checkpoint moved behind all others. Lightning calls
    them in list order at each step's end, so a checkpoint then holds what the video,
    monitor (and any user callback) did at its step, and a run resumed from it does not
    record that step's video or strip again."""
    return sorted(callbacks, key=lambda c: isinstance(c, EnvStepCheckpoint))


def make_trainer(cfg: Config, run_dir: Path, extra_callbacks: Sequence[L.Callback] = (),
                 max_epochs: int = 1) -> L.Trainer:
    """The Lightning trainer; settings Lightning rejects are a :class:`ConfigError`.
    The run is one epoch (``max_epochs`` counts a resumed run's finished epoch too)."""
    t = cfg.trainer
    try:
        trainer = L.Trainer(
            accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
            num_nodes=t.num_nodes, precision=t.precision,
            enable_progress_bar=t.enable_progress_bar, max_epochs=max_epochs,
            logger=TensorBoardLogger(save_dir=str(run_dir), name="", version=""),
            callbacks=checkpoint_last([*make_callbacks(cfg, run_dir), *extra_callbacks]),
            plugins=[AtomicCheckpointIO()],
            enable_checkpointing=False, use_distributed_sampler=False,
            enable_model_summary=False,  # no FLOPs to count; vlmrm reports its own sizes
            num_sanity_val_steps=0, default_root_dir=str(run_dir), log_every_n_steps=1,
        )
    except (ValueError, TypeError, MisconfigurationException) as err:
        settings = ", ".join(f"trainer.{k}={getattr(t, k)!r}" for k in
                             ("accelerator", "devices", "strategy", "num_nodes", "precision"))
        raise ConfigError(f"Lightning rejected the trainer settings ({settings}): "
                          f"{one_paragraph(str(err))} Fix the trainer value it names.") from None
    if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher):
        raise ConfigError(
            f"trainer.strategy={t.strategy!r} starts its ranks from inside fit, in processes "
            "forked or spawned from this one, but vlmrm builds each rank's envs and replay "
            "buffer before fit, in the rank's own process. Use trainer.strategy=ddp: Lightning "
            "then starts every rank as a process of its own, as torchrun and SLURM do.")
    return trainer
