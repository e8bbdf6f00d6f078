"""Environment factory: a Gymnasium id -> a TorchRL env that renders ``pixels`` every step.

The paper's scenes (``vlmrm/Humanoid-v0``, ``vlmrm/CartPole-v0``,
``vlmrm/MountainCarContinuous-v0``, see :mod:`vlmrm.scenes`) are ordinary Gymnasium ids;
``env.textured`` / ``env.camera`` / ``env.xml`` also dress any Gymnasium MuJoCo env.
"""

from __future__ import annotations

import functools
import inspect
import multiprocessing
import os
from enum import IntEnum
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from torchrl.data import Categorical
from torchrl.envs import (
    DoubleToFloat,
    EnvBase,
    GymWrapper,
    ParallelEnv,
    SerialEnv,
    TransformedEnv,
    default_info_dict_reader,
)

from vlmrm.config.schema import EnvConfig
from vlmrm.errors import ConfigError, one_paragraph
from vlmrm.keys import SUCCESS
from vlmrm.rl.gymstate import gym_state, load_gym_state
from vlmrm.rl.spaces import fit_spaces
from vlmrm.rl.wrappers import EpisodeEndIsTerminal, NoEarlyTermination
from vlmrm.scenes import SCENES, env_spec, is_mujoco
from vlmrm.scenes.mjcf import mujoco_scene_kwargs


class SeedOffset(IntEnum):
    """Each env's seed is ``cfg.seed + RANK_STRIDE * rank + offset``: envs for different
    purposes never replay the same episodes."""

    TRAIN = 0
    EVAL = 999
    VIDEO = 777
    PLAY = 4242
    #: Not an env: the generator of overlapped collection (agent.overlap).
    COLLECT = 31337


#: Seed distance between DDP ranks' envs.
RANK_STRIDE = 1000
#: Episodes of envs without a time limit would never end: stop videos and play here.
UNLIMITED_EPISODE_CAP = 1200


def env_seed(seed: int, purpose: SeedOffset, rank: int = 0) -> int:
    return seed + RANK_STRIDE * rank + int(purpose)


def episode_cap(cfg: EnvConfig) -> int:
    """The most steps one episode can take (for rollouts that must end)."""
    return cfg.episode_length or UNLIMITED_EPISODE_CAP


def make_gym_env(cfg: EnvConfig, render_size: tuple[int, int] | None = None) -> gym.Env:
    """The Gymnasium env, rendering ``rgb_array`` at ``render_size`` where the env allows.

    Arguments the env rejects (``env.kwargs``, ``env.xml``) are a :class:`ConfigError`."""
    try:
        return _make_gym_env(cfg, render_size)
    except (TypeError, ValueError) as err:
        given = f"env.kwargs={dict(cfg.kwargs)!r}" + (f", env.xml={cfg.xml!r}" if cfg.xml else "")
        raise ConfigError(f"env.id={cfg.id!r} could not be made with {given}: "
                          f"{one_paragraph(str(err))}. Fix or remove the argument it "
                          "names.") from None
    except gym.error.DependencyNotInstalled as err:
        raise ConfigError(f"env.id={cfg.id!r} needs a package that is not installed here: "
                          f"{one_paragraph(str(err))}") from None


def _make_gym_env(cfg: EnvConfig, render_size: tuple[int, int] | None) -> gym.Env:
    kwargs: dict[str, Any] = dict(cfg.kwargs)
    if cfg.episode_length is not None:
        kwargs["max_episode_steps"] = cfg.episode_length
    kwargs.update(scene_kwargs(cfg))
    size = cfg.render_size or render_size
    if size is not None and accepts_size(cfg.id):
        h, w = (size, size) if isinstance(size, int) else size
        kwargs.setdefault("width", w)
        kwargs.setdefault("height", h)
    env = fit_spaces(gym.make(cfg.id, render_mode="rgb_array", **kwargs), cfg.id)
    if not cfg.terminate_early:
        env = NoEarlyTermination(env)
    if cfg.episode_end == "terminate":
        env = EpisodeEndIsTerminal(env)
    return env


def scene_kwargs(cfg: EnvConfig) -> dict[str, Any]:
    """gym.make keyword arguments for env.textured / camera / xml / texture_dir."""
    texture_dir = None if cfg.texture_dir is None else str(Path(cfg.texture_dir).expanduser()
                                                          .resolve())
    if cfg.id in SCENES:
        chosen = {"textured": cfg.textured, "camera": cfg.camera, "xml_file": cfg.xml,
                  "texture_dir": texture_dir}
        return {k: v for k, v in chosen.items() if v is not None}
    options = (cfg.textured, cfg.camera, cfg.xml, cfg.texture_dir)
    if not is_mujoco(cfg.id) or all(v is None for v in options):
        return {}
    textured = cfg.textured if cfg.textured is not None else texture_dir is not None
    return mujoco_scene_kwargs(cfg.xml or _stock_xml(cfg.id), textured, cfg.camera,
                               texture_dir)


def _stock_xml(env_id: str) -> str:
    """The model file a Gymnasium MuJoCo id loads by default."""
    spec = env_spec(env_id)
    if "xml_file" in spec.kwargs:
        return spec.kwargs["xml_file"]
    creator = gym.envs.registration.load_env_creator(spec.entry_point)
    return inspect.signature(creator).parameters["xml_file"].default


def accepts_size(env_id: str) -> bool:
    """MuJoCo envs and the textured vlmrm scenes render at any width/height; classic-control
    ones at a fixed size (the reward model's preprocessing resizes them)."""
    if env_id in SCENES:
        return SCENES[env_id].sized
    return is_mujoco(env_id)


def emits_success(env_id: str) -> bool:
    return env_id in SCENES and SCENES[env_id].success


class ResumableEnv(TransformedEnv):
    """A TransformedEnv whose Gymnasium state a batched parent can read and set: a
    ParallelEnv dispatches calls of these methods to its worker processes."""

    def gym_state(self) -> dict[str, Any]:
        return gym_state(self.base_env._env)

    def load_gym_state(self, state: dict[str, Any]) -> None:
        load_gym_state(self.base_env._env, state)


def make_base_env(cfg: EnvConfig, render_size: tuple[int, int] | None, from_pixels: bool,
                  seed: int | None = None) -> EnvBase:
    """One TorchRL env: ``observation`` (float32), ``pixels`` (uint8 [H, W, 3]) if asked,
    and ``is_success`` (bool) for envs that report it."""
    env = GymWrapper(make_gym_env(cfg, render_size), from_pixels=from_pixels,
                     pixels_only=False, device="cpu")
    if emits_success(cfg.id):
        # Scalar per step, like the info value (a (1,)-shaped spec makes stacking resize).
        spec = {SUCCESS: Categorical(n=2, shape=(), dtype=torch.bool)}
        env.set_info_dict_reader(default_info_dict_reader([SUCCESS], spec=spec))
    env = ResumableEnv(env, DoubleToFloat())
    if seed is not None:
        env.set_seed(seed)
    return env


def make_worker_env(cfg: EnvConfig, render_size: tuple[int, int] | None, from_pixels: bool,
                    seed: int | None = None) -> EnvBase:
    """:func:`make_base_env` for an ``env.parallel`` worker. In a worker process, Mesa's
    software renderer gets one thread unless ``LP_NUM_THREADS`` says otherwise: by default it
    starts one per core in every process, and N workers' threads, the encoder and the learner
    then preempt each other (one thread rendered a humanoid frame in 8 % less CPU time; the
    humanoid loop on 2 cores ran 17.2 against 15.4 env steps/s; README, "How fast")."""
    if multiprocessing.parent_process() is not None:  # not the main process (spec probing)
        os.environ.setdefault("LP_NUM_THREADS", "1")
    return make_base_env(cfg, render_size, from_pixels, seed)


class WorkerEnvs(ParallelEnv):
    """TorchRL's ``ParallelEnv``, except that closing it leaves this process's torch thread
    count as it was when the envs were made. TorchRL 0.14's ``close`` adds the number of
    workers back to it even when starting them took none away (with 1 thread and 2 workers
    it left 2), so whatever ran after a close (scoring, updates) ran on more threads than
    ``agent.num_threads`` asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._caller_threads = torch.get_num_threads()

    def close(self, *, raise_if_closed: bool = True) -> None:
        try:
            super().close(raise_if_closed=raise_if_closed)
        finally:
            torch.set_num_threads(self._caller_threads)


def make_env(cfg: EnvConfig, render_size: tuple[int, int] | None, from_pixels: bool,
             seed: int) -> EnvBase:
    """``cfg.num_envs`` envs batched as one (serially or in worker processes)."""
    if cfg.num_envs == 1 and not cfg.parallel:
        return make_base_env(cfg, render_size, from_pixels, seed)
    if cfg.parallel:
        # Not TorchRL's shared-memory buffers: with them the main process waits for the
        # workers by spin-polling in Python, which held the GIL and burned 0.8 of a core per
        # step here (2 humanoid workers: 24.7 env steps/s); through pipes it blocks in the OS
        # (37.2 env steps/s, 0.07 of a core), and frames are small next to a render.
        env = WorkerEnvs(cfg.num_envs, functools.partial(
            make_worker_env, cfg, render_size, from_pixels), use_buffers=False)
    else:
        env = SerialEnv(cfg.num_envs, functools.partial(
            make_base_env, cfg, render_size, from_pixels))
    env.set_seed(seed)
    return env
