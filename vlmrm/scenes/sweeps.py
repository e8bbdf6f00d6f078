"""Goal-variable sweeps: scenes whose goal is one state variable, set on a grid and rendered.

A :class:`Sweep` says which variable decides the goal (CartPole: the pole angle; MountainCar:
the car position), the grid to sweep it over, the goal region, and how "goal-like" each value
is. ``vlmrm evaluate-reward`` renders every grid state through the env's own ``render()``
(the picture training sees) and compares reward models against it; the bundled demo model's
held-out check uses the same sweeps.

Torch-free: values and frames are numpy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

CARTPOLE_GOAL_ANGLE = 12 * 2 * math.pi / 360  # CartPole's own upright band (12 degrees)


@dataclass(frozen=True)
class Sweep:
    """One scene's goal variable: grid, goal region and goal-ness."""

    variable: str  # axis label, e.g. "pole angle (rad)"
    target: str  # what goal-ness is, e.g. "-|pole angle|"
    region: str  # the goal region in words, e.g. "|pole angle| <= 0.209 (12 degrees)"
    low: float
    high: float
    points: int
    #: Puts an unwrapped env of the scene in the state with this value (other state zero).
    set_state: Callable[[gym.Env, float], None]
    #: Higher is more goal-like: the reference ranking for Spearman's rho.
    goalness: Callable[[np.ndarray], np.ndarray]
    #: True inside the goal region: the ground-truth success of each value.
    in_goal: Callable[[np.ndarray], np.ndarray]
    #: Goal region as intervals of the variable, for shading plots.
    goal_spans: tuple[tuple[float, float], ...]

    def grid(self, points: int | None = None) -> np.ndarray:
        """The centres of ``points`` equal cells of ``[low, high)`` (never an end point:
        -pi and pi are the same pole angle)."""
        n = points or self.points
        step = (self.high - self.low) / n
        return self.low + step / 2 + step * np.arange(n)

    def render(self, env: gym.Env, values: np.ndarray) -> np.ndarray:
        """uint8 frames ``[N, H, W, 3]``, one per value, from the env's own ``render()``."""
        base = env.unwrapped
        if getattr(base, "state", None) is None:
            env.reset(seed=0)
        frames = []
        for v in values:
            self.set_state(base, float(v))
            frames.append(base.render())
        return np.stack(frames)


def _cartpole_state(env: gym.Env, angle: float) -> None:
    env.state = np.array([0.0, 0.0, angle, 0.0])  # cart centred, at rest


def _mountaincar_state(env: gym.Env, position: float) -> None:
    env.state = np.array([position, 0.0])


CARTPOLE = Sweep(
    variable="pole angle (rad)", target="-|pole angle|",
    region=f"|pole angle| <= {CARTPOLE_GOAL_ANGLE:.4f} (12 degrees)",
    low=-math.pi, high=math.pi, points=73, set_state=_cartpole_state,
    goalness=lambda v: -np.abs(v), in_goal=lambda v: np.abs(v) <= CARTPOLE_GOAL_ANGLE,
    goal_spans=((-CARTPOLE_GOAL_ANGLE, CARTPOLE_GOAL_ANGLE),))

MOUNTAINCAR_GOAL = 0.45  # the flag (MountainCar's goal_position)

MOUNTAINCAR = Sweep(
    variable="car position", target="car position", region=f"position >= {MOUNTAINCAR_GOAL}",
    low=-1.2, high=0.6, points=60, set_state=_mountaincar_state,
    goalness=lambda v: np.asarray(v, dtype=float), in_goal=lambda v: v >= MOUNTAINCAR_GOAL,
    goal_spans=((MOUNTAINCAR_GOAL, 0.6),))

#: Env id -> its sweep. Stock ids share the paper scenes' state layout.
SWEEPS: dict[str, Sweep] = {
    "vlmrm/CartPole-v0": CARTPOLE,
    "CartPole-v1": CARTPOLE,
    "vlmrm/MountainCarContinuous-v0": MOUNTAINCAR,
    "MountainCarContinuous-v0": MOUNTAINCAR,
    "MountainCar-v0": MOUNTAINCAR,
}


def sweep_for(env_id: str) -> Sweep | None:
    """The scene's goal-variable sweep, or None for scenes without one (e.g. the humanoid)."""
    return SWEEPS.get(env_id)
