"""CartPole as the paper trained it: no termination, wrapped angle, cart kept on the track."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from vlmrm.keys import SUCCESS


def wrap_angle(theta: float) -> float:
    """``theta`` mapped to [-pi, pi)."""
    return float((theta + np.pi) % (2 * np.pi) - np.pi)


class PaperCartPoleEnv(CartPoleEnv):
    """Gymnasium's CartPole with the paper's changes.

    - Episodes never terminate (the time limit ends them): the pole may fall and swing up.
    - The pole angle wraps to [-pi, pi); the cart is clipped to the track
      (|x| <= 2.4) and stops there.
    - Reward 1 per step with ``is_success`` (pole within 12 degrees of upright and the cart
      on the track), else 0, so the return counts upright steps; ``info["is_success"]``.
    - Frames are square (600 x 600): a CLIP centre crop of the stock 600 x 400 frame would
      cut off the outer thirds of the track.
    """

    def __init__(self, render_mode: str | None = None, **kwargs) -> None:
        super().__init__(render_mode=render_mode, **kwargs)
        self.screen_height = self.screen_width
        big = np.finfo(np.float32).max
        high = np.array([self.x_threshold, big, np.pi, big], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)

    def is_success(self) -> bool:
        """Pole within the upright band and the cart on the track."""
        x, _, theta, _ = self.state
        return bool(abs(wrap_angle(theta)) <= self.theta_threshold_radians
                    and abs(x) <= self.x_threshold)

    def step(self, action):
        super().step(action)
        self.steps_beyond_terminated = None  # we never terminate: silence the parent's warning
        x, x_dot, theta, theta_dot = (float(v) for v in self.state)
        if abs(x) > self.x_threshold:
            x, x_dot = float(np.clip(x, -self.x_threshold, self.x_threshold)), 0.0
        self.state = np.array((x, x_dot, wrap_angle(theta), theta_dot), dtype=np.float64)
        success = self.is_success()
        obs = np.array(self.state, dtype=np.float32)
        return obs, float(success), False, False, {SUCCESS: np.bool_(success)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        info[SUCCESS] = np.bool_(self.is_success())
        return obs, info

    def render(self):
        """The stock picture, read off the pygame surface in one C copy. With the stock
        ``rgb_array`` read (a transposed NumPy copy of a strided view) a render took about
        1.4 ms here, with it 0.7 ms: time that holds the GIL, which the learner thread waits
        on when collection overlaps it. Drawing runs under a render mode that the parent
        class draws for but converts nothing for."""
        if self.render_mode != "rgb_array":
            return super().render()
        self.render_mode = _DRAW_ONLY
        try:
            super().render()
        finally:
            self.render_mode = "rgb_array"
        return surface_pixels(self.screen)


#: A render mode CartPoleEnv.render draws under (an off-screen surface) without returning.
_DRAW_ONLY = "vlmrm_draw_only"


def surface_pixels(surface) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB pixels of a pygame surface (rows top to bottom)."""
    import pygame  # a dependency of gymnasium's classic-control rendering only

    w, h = surface.get_size()
    return np.frombuffer(bytearray(pygame.image.tobytes(surface, "RGB")),
                         dtype=np.uint8).reshape(h, w, 3)
