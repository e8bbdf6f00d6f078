"""Environment factory: a Gymnasium id -> a TorchRL env that renders ``pixels`` every step."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
from torchrl.envs import DoubleToFloat, EnvBase, GymWrapper, ParallelEnv, SerialEnv, TransformedEnv

from vlmrm.config import EnvConfig


class NoEarlyTermination(gym.Wrapper):
    """Ignore ``terminated`` so every episode lasts until the time limit (the paper's setting)."""

    def step(self, action):
        obs, reward, _terminated, truncated, info = self.env.step(action)
        return obs, reward, False, truncated, info


def make_gym_env(cfg: EnvConfig, render_size: tuple[int, int] | None = None) -> gym.Env:
    """The Gymnasium env, rendering ``rgb_array`` at ``render_size`` where the env allows."""
    kwargs: dict[str, Any] = dict(cfg.kwargs)
    if cfg.episode_length is not None:
        kwargs["max_episode_steps"] = cfg.episode_length
    size = cfg.render_size or render_size
    if size is not None and _accepts_size(cfg.id):
        h, w = (size, size) if isinstance(size, int) else size
        kwargs.setdefault("width", w)
        kwargs.setdefault("height", h)
    env = gym.make(cfg.id, render_mode="rgb_array", **kwargs)
    if not cfg.terminate_early:
        env = NoEarlyTermination(env)
    return env


def _accepts_size(env_id: str) -> bool:
    """MuJoCo envs take width/height; classic-control ones render at a fixed size."""
    entry = gym.spec(env_id).entry_point
    return isinstance(entry, str) and ".mujoco" in entry


def make_base_env(cfg: EnvConfig, render_size: tuple[int, int] | None, from_pixels: bool,
                  seed: int | None = None) -> EnvBase:
    """One TorchRL env: ``observation`` (float32), ``pixels`` (uint8 [H, W, 3]) if asked."""
    env = GymWrapper(make_gym_env(cfg, render_size), from_pixels=from_pixels,
                     pixels_only=False, device="cpu")
    env = TransformedEnv(env, DoubleToFloat())
    if seed is not None:
        env.set_seed(seed)
    return env


def make_env(cfg: EnvConfig, render_size: tuple[int, int] | None, from_pixels: bool,
             seed: int) -> EnvBase:
    """``cfg.num_envs`` envs batched as one (serially or in worker processes)."""
    factory = functools.partial(make_base_env, cfg, render_size, from_pixels)
    if cfg.num_envs == 1:
        return factory(seed)
    batched_cls = ParallelEnv if cfg.parallel else SerialEnv
    env = batched_cls(cfg.num_envs, factory)
    env.set_seed(seed)
    return env
