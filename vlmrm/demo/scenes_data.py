"""Sample states of the bundled classic-control scenes and render them as the envs do."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

import vlmrm.scenes  # noqa: F401  (registers the vlmrm/ env ids)
from vlmrm.backends.preprocess import ImagePreprocessor
from vlmrm.demo.captions import cartpole_caption, mountaincar_caption
from vlmrm.scenes.sweeps import CARTPOLE, MOUNTAINCAR

CARTPOLE_ID = "vlmrm/CartPole-v0"
MOUNTAINCAR_ID = "vlmrm/MountainCarContinuous-v0"


@dataclass
class Samples:
    """Preprocessed-size uint8 frames, their captions and the states behind them."""

    frames: torch.Tensor  # [N, h, w, 3] uint8, already resized as the reward model will
    captions: list[str]
    scene: torch.Tensor  # [N] 0 = CartPole, 1 = MountainCar
    state: torch.Tensor  # [N] pole angle (CartPole) or car position (MountainCar)


class SceneRenderer:
    """Renders hand-set states with the real envs' own ``render()``."""

    def __init__(self, resize: ImagePreprocessor) -> None:
        self.resize = resize
        self.cartpole = gym.make(CARTPOLE_ID, render_mode="rgb_array").unwrapped
        self.mountaincar = gym.make(MOUNTAINCAR_ID, render_mode="rgb_array").unwrapped
        self.cartpole.reset(seed=0)
        self.mountaincar.reset(seed=0)

    def cartpole_frame(self, x: float, theta: float) -> np.ndarray:
        self.cartpole.state = np.array([x, 0.0, theta, 0.0])
        return self.cartpole.render()

    def mountaincar_frame(self, position: float) -> np.ndarray:
        self.mountaincar.state = np.array([position, 0.0])
        return self.mountaincar.render()

    def small(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize to the model's input size once, with the backend's own resize."""
        return self.resize.resize_frames(torch.from_numpy(np.stack(frames)))

    def close(self) -> None:
        self.cartpole.close()
        self.mountaincar.close()


def sample_states(n: int, seed: int) -> list[tuple[int, float, float]]:
    """(scene, x-or-position, angle) triples; CartPole angles dense near upright."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            theta = rng.gauss(0, 0.3) if rng.random() < 0.5 else rng.uniform(-math.pi, math.pi)
            out.append((0, rng.uniform(-2.4, 2.4), theta))
        else:
            out.append((1, rng.uniform(-1.2, 0.6), 0.0))
    return out


def make_samples(renderer: SceneRenderer, n: int, seed: int,
                 progress: Callable[[int], None] | None = None) -> Samples:
    rng = random.Random(seed + 1)
    frames, captions, scene, state = [], [], [], []
    for k, (s, a, theta) in enumerate(sample_states(n, seed)):
        if s == 0:
            frames.append(renderer.small([renderer.cartpole_frame(a, theta)]))
            captions.append(cartpole_caption(a, theta, rng))
            state.append(math.atan2(math.sin(theta), math.cos(theta)))
        else:
            frames.append(renderer.small([renderer.mountaincar_frame(a)]))
            captions.append(mountaincar_caption(a, rng))
            state.append(a)
        scene.append(s)
        if progress and k % 2000 == 0:
            progress(k)
    return Samples(torch.cat(frames), captions, torch.tensor(scene), torch.tensor(state, dtype=torch.float32))


def angle_sweep(renderer: SceneRenderer, n: int = CARTPOLE.points
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out CartPole frames (cart centred) over pole angles in [-pi, pi), and the angles
    (the shared sweep, :data:`vlmrm.scenes.sweeps.CARTPOLE`; training states are random)."""
    angles = CARTPOLE.grid(n)
    frames = CARTPOLE.render(renderer.cartpole, angles)
    return torch.from_numpy(frames), torch.from_numpy(angles).float()


def position_sweep(renderer: SceneRenderer, n: int = MOUNTAINCAR.points
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out MountainCar frames over car positions in [-1.2, 0.6], and the positions."""
    positions = MOUNTAINCAR.grid(n)
    frames = MOUNTAINCAR.render(renderer.mountaincar, positions)
    return torch.from_numpy(frames), torch.from_numpy(positions).float()
