"""Humanoid frames/s rendered straight at the reward model's input size versus rendered at
480 x 480 and resized to it (bicubic, antialiased, as the model's preprocessing would).

Both paths render the same scene (``vlmrm/Humanoid-v0``: textured, the paper's camera) from
the same states, in one run, so the ratio is meaningful on a shared machine.

    python benchmarks/render_speed.py                  # 224 x 224 (CLIP ViT-B/L/bigG)
    python benchmarks/render_speed.py --size 336 --frames 60
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

import vlmrm.scenes  # noqa: F401  (registers vlmrm/Humanoid-v0; headless rendering)

LARGE = 480


def make(size: int) -> gym.Env:
    env = gym.make("vlmrm/Humanoid-v0", render_mode="rgb_array", width=size, height=size)
    env.reset(seed=0)
    return env


def resize(frame: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)  # MuJoCo's is flipped
    return F.resize(x, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)


def time_path(env: gym.Env, states: list[tuple[np.ndarray, np.ndarray]], size: int | None
              ) -> float:
    """Seconds per frame: set each state, render, resize when ``size`` is given."""
    sim = env.unwrapped
    sim.set_state(*states[0])
    env.render()  # the first render builds the GL context: not timed
    start = time.perf_counter()
    for qpos, qvel in states:
        sim.set_state(qpos, qvel)
        frame = env.render()
        if size is not None:
            resize(frame, size)
    return (time.perf_counter() - start) / len(states)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="reward model input size")
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    small, large = make(args.size), make(LARGE)
    sim, rng = small.unwrapped, np.random.default_rng(0)
    states = []
    for _ in range(args.frames):  # a random rollout: the humanoid stands, falls, lies
        small.step(rng.uniform(-0.4, 0.4, small.action_space.shape).astype(np.float32))
        states.append((sim.data.qpos.copy(), sim.data.qvel.copy()))
    # Alternate the two paths so load changes on a shared machine hit both alike.
    direct, resized = [], []
    for chunk in np.array_split(np.arange(len(states)), 4):
        part = [states[i] for i in chunk]
        direct.append(time_path(small, part, None))
        resized.append(time_path(large, part, args.size))
    t_direct, t_resized = float(np.mean(direct)), float(np.mean(resized))
    print(f"humanoid (textured, paper camera), {args.frames} frames, MUJOCO_GL egl/software")
    print(f"  render at {args.size}x{args.size}:               {1 / t_direct:7.1f} frames/s "
          f"({t_direct * 1e3:.1f} ms)")
    print(f"  render at {LARGE}x{LARGE} + resize to {args.size}: {1 / t_resized:7.1f} frames/s "
          f"({t_resized * 1e3:.1f} ms)")
    print(f"  speed-up of rendering at the model's size: {t_resized / t_direct:.2f}x")


if __name__ == "__main__":
    main()
