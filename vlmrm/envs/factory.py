"""Environment factory: a Gymnasium id -> a TorchRL env that renders ``pixels`` every step.

The paper's scenes (``vlmrm/Humanoid-v0``, ``vlmrm/CartPole-v0``,
``vlmrm/MountainCarContinuous-v0``, see :mod:`vlmrm.scenes`) are ordinary Gymnasium ids;
``env.textured`` / ``env.camera`` / ``env.xml`` also dress any Gymnasium MuJoCo env.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import gymnasium as gym
import torch
from torchrl._utils import seed_generator
from torchrl.data import Categorical
from torchrl.envs import (
    DoubleToFloat,
    EnvBase,
    GymWrapper,
    SerialEnv,
    TransformedEnv,
    default_info_dict_reader,
)

from vlmrm.config.schema import Config, EnvConfig
from vlmrm.envs.gymenv import (  # noqa: F401  (make_gym_env and accepts_size: public here)
    accepts_size,
    emits_success,
    make_gym_env,
    make_worker_gym_env,
    scene_kwargs,
)
from vlmrm.envs.gymstate import gym_state, load_gym_state, to_arrays, to_tensors
from vlmrm.keys import GT_REWARD, SUCCESS
from vlmrm.reward.mix import InfoTerms
from vlmrm.reward.spec import mix_terms
from vlmrm.seeds import SeedPurpose, env_seed  # the callers' purposes, public here too

#: Episodes of envs without a time limit would never end: stop videos and play here.
UNLIMITED_EPISODE_CAP = 1200


def episode_cap(cfg: EnvConfig) -> int:
    """The most steps one episode can take (for rollouts that must end)."""
    return cfg.episode_length or UNLIMITED_EPISODE_CAP


class ResumableEnv(TransformedEnv):
    """A TransformedEnv whose Gymnasium state a batched parent can read and set: a
    SerialEnv dispatches calls of these methods to its envs."""

    def gym_state(self) -> dict[str, Any]:
        return gym_state(self.base_env._env)

    def load_gym_state(self, state: dict[str, Any]) -> None:
        load_gym_state(self.base_env._env, state)


def make_base_env(cfg: EnvConfig, render_size: tuple[int, int] | None, from_pixels: bool,
                  seed: int | None = None, info_keys: tuple[str, ...] = ()) -> EnvBase:
    """One TorchRL env: ``observation`` (float32), ``pixels`` (uint8 [H, W, 3]) if asked,
    ``is_success`` (bool) for envs that report it, and ``info_keys`` of its info dict
    (float32; a ``mix`` transform's terms)."""
    env = GymWrapper(make_gym_env(cfg, render_size), from_pixels=from_pixels,
                     pixels_only=False, device="cpu")
    if emits_success(cfg.id):
        # Scalar per step, like the info value (a (1,)-shaped spec makes stacking resize).
        spec = {SUCCESS: Categorical(n=2, shape=(), dtype=torch.bool)}
        env.set_info_dict_reader(default_info_dict_reader([SUCCESS], spec=spec))
    _read_info_terms(env, cfg.id, info_keys, ())
    env = ResumableEnv(env, DoubleToFloat())
    if seed is not None:
        env.set_seed(seed)
    return env


#: Thread pools a worker's libraries start when they load, before the worker's own code
#: runs: one thread each (numpy's BLAS and OpenMP) unless the user set a count.
WORKER_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class VectorEnvs(GymWrapper):
    """``env.parallel``: the envs in the worker processes of Gymnasium's ``AsyncVectorEnv``,
    as one TorchRL env of batch ``[num_envs]`` (built by :func:`make_vector_envs`).

    A worker holds Gymnasium, MuJoCo, numpy and :mod:`vlmrm.envs.gymenv`'s env, no torch;
    observations and frames come back through shared memory and become tensors here.
    Finished episodes reset when ``step_and_maybe_reset`` says so
    (``AutoresetMode.DISABLED``), and the seeds are those a ``SerialEnv`` gives its envs, so
    ``env.parallel`` true and false run the same episodes, bit for bit."""

    def set_seed(self, seed: int | None = None, static_seed: bool = False) -> int | None:
        seeds = []
        for _ in range(self.batch_size[0]):
            seeds.append(seed)
            if seed is not None and not static_seed:
                seed = seed_generator(seed)
        self._env.reset(seed=seeds)
        return seed

    def gym_states(self) -> list[dict[str, Any]]:
        """Each worker env's :func:`~vlmrm.envs.gymstate.gym_state`."""
        return [to_tensors(state) for state in _answers(self._env.call("capture_state"))]

    def load_gym_states(self, states: list[dict[str, Any]]) -> None:
        self._env.set_attr("pending_state", [to_arrays(state) for state in states])
        _answers(self._env.call("restore_pending"))

    def process_facts(self) -> list[dict[str, Any]]:
        """Each worker's :meth:`~vlmrm.envs.gymenv.WorkerEnv.process_facts` (pid, heavy
        modules loaded, thread and rendering settings)."""
        return list(self._env.call("process_facts"))


def vector_envs(env: EnvBase) -> VectorEnvs | None:
    """The :class:`VectorEnvs` ``env`` is (or transforms), else None."""
    base = env.base_env if isinstance(env, TransformedEnv) else env
    return base if isinstance(base, VectorEnvs) else None


def _answers(replies: tuple[dict[str, Any], ...]) -> list[Any]:
    for i, reply in enumerate(replies):
        if "error" in reply:
            raise ValueError(f"env.parallel worker {i}: {reply['error']}")
    return [reply.get("state") for reply in replies]


@contextlib.contextmanager
def _worker_start() -> Iterator[None]:
    """While workers start: the thread counts of :data:`WORKER_THREAD_VARS`, and no
    ``__main__`` to re-import. A spawned process imports the script that started its parent
    (the ``__main__`` guard only stops it running), and a script importing torch at the top,
    such as benchmarks/throughput.py or a user's training script, would cost every worker
    what :mod:`vlmrm.envs.gymenv` spares it. An id registered by that script reaches the
    workers with the env instead (``make_worker_gym_env``'s ``spec``)."""
    saved_vars = {name: os.environ.get(name) for name in WORKER_THREAD_VARS}
    main = sys.modules.get("__main__")
    hidden = {k: main.__dict__.pop(k) for k in ("__file__", "__spec__")
              if main is not None and k in main.__dict__}
    if main is not None:
        main.__spec__ = None  # spawn reads it unguarded
    try:
        for name in WORKER_THREAD_VARS:
            os.environ.setdefault(name, "1")
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(hidden)
        for name, value in saved_vars.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def make_vector_envs(cfg: EnvConfig, render_size: tuple[int, int] | None,
                     from_pixels: bool, info_keys: tuple[str, ...] = ()) -> EnvBase:
    """``cfg.num_envs`` envs in worker processes (``env.parallel``): ``observation``,
    ``pixels`` and ``is_success`` as :func:`make_base_env` gives them, batched."""
    build = functools.partial(make_worker_gym_env, cfg, render_size, from_pixels,
                              gym.registry.get(cfg.id))
    with _worker_start():
        vector = gym.vector.AsyncVectorEnv(
            [build] * cfg.num_envs, shared_memory=True, context="spawn",
            autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    env = VectorEnvs(vector, device="cpu")
    if emits_success(cfg.id):
        spec = {SUCCESS: Categorical(n=2, shape=(cfg.num_envs,), dtype=torch.bool)}
        env.set_info_dict_reader(default_info_dict_reader([SUCCESS], spec=spec))
    _read_info_terms(env, cfg.id, info_keys, (cfg.num_envs,))
    return TransformedEnv(env, DoubleToFloat())


def _read_info_terms(env: GymWrapper, env_id: str, info_keys: tuple[str, ...],
                     batch: tuple[int, ...]) -> None:
    keys = [k for k in info_keys if not (k == SUCCESS and emits_success(env_id))]
    if keys:
        env.set_info_dict_reader(InfoTerms(keys, env_id, batch))


def info_keys_for(cfg: Config) -> tuple[str, ...]:
    """The info-dict keys the reward's ``mix`` terms need (none without a mix)."""
    terms = mix_terms(cfg.reward.transform) or {}
    return tuple(k for k in terms if k != GT_REWARD)


def make_env(cfg: EnvConfig, render_size: tuple[int, int] | None, from_pixels: bool,
             seed: int, info_keys: tuple[str, ...] = ()) -> EnvBase:
    """``cfg.num_envs`` envs batched as one (serially or in worker processes)."""
    if cfg.num_envs == 1 and not cfg.parallel:
        return make_base_env(cfg, render_size, from_pixels, seed, info_keys)
    if cfg.parallel:
        env = make_vector_envs(cfg, render_size, from_pixels, info_keys)
    else:
        env = SerialEnv(cfg.num_envs, functools.partial(
            make_base_env, cfg, render_size, from_pixels, info_keys=info_keys))
    env.set_seed(seed)
    return env


def env_for(cfg: Config, purpose: SeedPurpose, rank: int = 0, *,
            render_size: tuple[int, int] | None = None, from_pixels: bool = True,
            num_envs: int | None = None) -> EnvBase:
    """The env of ``cfg.env`` for ``purpose``, seeded from the run's seed, ``rank`` and the
    purpose (:func:`vlmrm.seeds.env_seed`): every command and callback builds its envs here.

    ``num_envs`` envs batched as ``env.parallel`` says (training: the rank's share), or,
    without ``num_envs``, one env in this process (evaluation, videos, play, render,
    dataset)."""
    seed = env_seed(cfg.seed, purpose, rank)
    info = info_keys_for(cfg)
    if num_envs is None:
        return make_base_env(cfg.env, render_size, from_pixels, seed, info)
    return make_env(replace(cfg.env, num_envs=num_envs), render_size, from_pixels, seed, info)
