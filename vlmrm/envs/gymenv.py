"""Gymnasium envs as vlmrm builds them, without torch: what an ``env.parallel`` worker runs.

A worker process imports this module, Gymnasium, MuJoCo and numpy only. Importing torch and
TorchRL cost each of the humanoid preset's 32 workers about 600 MB; the training process
turns each step's arrays into tensors instead (:class:`vlmrm.envs.factory.VectorEnvs`).
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import signal
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import AddRenderObservation

from vlmrm.config.schema import EnvConfig
from vlmrm.envs.gymstate import capture_arrays, restore_arrays
from vlmrm.envs.spaces import fit_spaces
from vlmrm.envs.wrappers import EpisodeEndIsTerminal, NoEarlyTermination, OwnGLContext
from vlmrm.errors import ConfigError, one_paragraph
from vlmrm.scenes import SCENES, env_spec, is_mujoco
from vlmrm.scenes.mjcf import mujoco_scene_kwargs


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
    if hasattr(env.unwrapped, "mujoco_renderer"):
        env = OwnGLContext(env)
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


#: Modules a worker must not hold (:meth:`WorkerEnv.process_facts` reports them).
HEAVY_MODULES = ("torch", "torchrl", "tensordict", "lightning", "open_clip", "transformers")
#: Environment variables that set a worker's rendering and thread counts.
PROCESS_VARS = ("MUJOCO_GL", "LP_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class WorkerEnv(gym.Wrapper):
    """The outermost layer of a worker's env: what ``AsyncVectorEnv.call`` reaches in the
    worker process. It reads and sets the state of the env it wraps (the same chain a
    serial env has, so states move between ``env.parallel`` true and false). A state to restore arrives first through
    ``set_attr("pending_state", ...)``, one per env, and :meth:`restore_pending` applies it.
    Errors come back as values: a worker that raises is shut down by Gymnasium, and the run
    would lose all its envs."""

    pending_state: dict[str, Any] | None = None

    def capture_state(self) -> dict[str, Any]:
        try:
            return {"state": capture_arrays(self.env)}
        except ValueError as err:
            return {"error": str(err)}

    def restore_pending(self) -> dict[str, Any]:
        state, self.pending_state = self.pending_state, None
        try:
            restore_arrays(self.env, state)
        except (ValueError, KeyError, TypeError) as err:
            return {"error": str(err)}
        return {}

    def process_facts(self) -> dict[str, Any]:
        """The worker process: its pid, the :data:`HEAVY_MODULES` it loaded (none is
        expected) and its :data:`PROCESS_VARS`."""
        return {"pid": os.getpid(),
                "heavy_modules": [m for m in HEAVY_MODULES if m in sys.modules],
                "vars": {name: os.environ.get(name) for name in PROCESS_VARS}}


def make_worker_gym_env(cfg: EnvConfig, render_size: tuple[int, int] | None,
                        from_pixels: bool, spec: gym.envs.registration.EnvSpec | None = None
                        ) -> gym.Env:
    """One ``env.parallel`` worker's env: :func:`make_gym_env`, with the rendered frame
    under ``pixels`` next to the ``state`` (as TorchRL's GymWrapper adds it in the training
    process), wrapped in :class:`WorkerEnv`.

    ``spec`` is the id's registration in the training process, for ids registered there by
    code a worker does not import. In a worker process, Mesa's software renderer gets one
    thread unless ``LP_NUM_THREADS`` says otherwise: by default it starts one per core in
    every process, and N workers' threads, the encoder and the learner then preempt each
    other (one thread rendered a humanoid frame in 8 % less CPU time; the humanoid loop on
    2 cores ran 17.2 against 15.4 env steps/s; docs/design-notes.md, "Env workers, measured")."""
    if multiprocessing.parent_process() is not None:  # not the main process (spec probing)
        os.environ.setdefault("LP_NUM_THREADS", "1")
        # A terminal's Ctrl-C (or a job's SIGTERM) reaches every process of the group: a
        # worker would die before the stop's checkpoint reads its env. The training process
        # handles the signal and closes its workers (they also end when its pipe closes).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if spec is not None and spec.id not in gym.registry:
        gym.registry[spec.id] = spec
    env = make_gym_env(cfg, render_size)
    if from_pixels:
        env = AddRenderObservation(env, render_only=False)
    return WorkerEnv(env)
