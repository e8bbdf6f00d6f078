"""MountainCarContinuous as the paper ran it (sticky ``is_success``, held at the flag), with a
realistic-looking render option.

The paper could not train on the stock flat-colour render at all; CLIP needs a scene that
looks like a photo of a car on a mountain. The textured render is drawn here with PIL
(sky, grass, a dirt road, a red car, a yellow flag), straight at the requested size.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from gymnasium.envs.classic_control.continuous_mountain_car import Continuous_MountainCarEnv
from PIL import Image, ImageDraw, ImageFilter

from vlmrm.keys import SUCCESS

X_MIN, X_MAX = -1.2, 0.6
GROUND = 0.12  # fraction of the frame below the lowest point of the valley


def hill(x: np.ndarray | float) -> np.ndarray | float:
    return np.sin(3 * np.asarray(x)) * 0.45 + 0.55


class PaperMountainCarEnv(Continuous_MountainCarEnv):
    """``MountainCarContinuous-v0`` as the paper's code ran it, plus square frames.

    - ``info["is_success"]``: the car has reached the flag (position >= 0.45) in this episode.
      As in the paper's code the flag stays set once reached and the car is held at
      x <= 0.45 from then on (its velocity is kept, so it may roll back down; success stays
      set). Unlike the paper's code, ``reset`` clears it: theirs carried it into later
      episodes of the same env.
    - The stock goal termination is ignored (so was it in the paper's code): the time limit
      ends episodes, and the car must get to the flag and stay there.
    - ``textured=True`` draws the realistic scene at ``width`` x ``height``,
      ``textured=False`` the stock pygame picture (600 x 600).
    """

    def __init__(self, render_mode: str | None = None, goal_velocity: float = 0,
                 textured: bool = True, width: int = 400, height: int = 400) -> None:
        super().__init__(render_mode=render_mode, goal_velocity=goal_velocity)
        self.textured = textured
        self.size = (int(height), int(width))
        self.screen_height = self.screen_width  # square: a centre crop keeps the flag
        self.reached_flag = False

    def is_success(self) -> bool:
        """The car has reached the flag in this episode (or stands at it now)."""
        return self.reached_flag or bool(self.state[0] >= self.goal_position)

    def step(self, action):
        _, reward, _goal, truncated, info = super().step(action)
        self.reached_flag = self.is_success()
        if self.reached_flag:
            # Held at the flag: the car stays in the frame (at x = 0.6 half of it is outside).
            position, velocity = self.state
            self.state = np.array([min(position, self.goal_position), velocity],
                                  dtype=np.float32)
        info[SUCCESS] = np.bool_(self.reached_flag)
        return np.array(self.state, dtype=np.float32), reward, False, truncated, info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.reached_flag = False
        obs, info = super().reset(seed=seed, options=options)
        info[SUCCESS] = np.bool_(self.is_success())
        return obs, info

    def render(self):
        if not self.textured or self.render_mode != "rgb_array":
            return super().render()
        return paint_frame(float(self.state[0]), self.goal_position, *self.size)


def _to_pixels(x: float, y: float, h: int, w: int) -> tuple[float, float]:
    scale = w / (X_MAX - X_MIN)
    return (x - X_MIN) * scale, h * (1 - GROUND) - y * scale * h / w


@lru_cache(maxsize=8)
def _background(h: int, w: int, goal: float) -> Image.Image:
    """Sky, distant hills, grass, road and flag: everything but the car (drawn once)."""
    rng = np.random.default_rng(0)  # fixed: the scene must not change between frames
    rows = np.linspace(0, 1, h)[:, None, None]
    sky = (1 - rows) * np.array([92, 150, 220]) + rows * np.array([215, 232, 250])
    img = np.broadcast_to(sky, (h, w, 3)).copy()
    xs = np.arange(w)
    far = h * (0.52 + 0.06 * np.sin(xs / w * 7.0 + 1.0) + 0.03 * np.sin(xs / w * 17.0))
    img[rows[:, 0, 0][:, None] * h > far[None, :]] = [120, 150, 150]
    world_x = X_MIN + (xs + 0.5) / w * (X_MAX - X_MIN)
    ground_y = np.array([_to_pixels(x, hill(x), h, w)[1] for x in world_x])
    depth = np.arange(h)[:, None] - ground_y[None, :]
    grass = np.array([70, 128, 52]) + rng.normal(0, 14, (h, w, 1)) * np.array([0.6, 1.0, 0.5])
    grass = grass * np.clip(1 - depth[..., None] / (2.5 * h), 0.6, 1)
    img = np.where((depth > 0)[..., None], grass, img)
    road = (depth > -0.004 * h - 1) & (depth < 0.02 * h + 1)
    img[road] = [132, 104, 72]
    pic = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(radius=max(w / 600, 0.4)))
    _draw_flag(ImageDraw.Draw(pic), goal, h, w)
    return pic


def _draw_flag(draw: ImageDraw.ImageDraw, goal: float, h: int, w: int) -> None:
    fx, fy = _to_pixels(goal, hill(goal), h, w)
    top = fy - 0.16 * h
    draw.line([(fx, fy), (fx, top)], fill=(90, 90, 90), width=max(1, round(w / 200)))
    draw.polygon([(fx, top), (fx + 0.07 * w, top + 0.03 * h), (fx, top + 0.06 * h)],
                 fill=(250, 210, 30), outline=(180, 140, 0))


@lru_cache(maxsize=8)
def _car_sprite(w: int) -> Image.Image:
    """A small red car, drawn at 4x and scaled down for smooth edges (RGBA)."""
    cw, ch = 0.11 * w * 4, 0.075 * w * 4
    img = Image.new("RGBA", (round(cw), round(ch)), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    body_top, body_bottom = 0.38 * ch, 0.78 * ch
    d.rounded_rectangle([0, body_top, cw, body_bottom], radius=0.08 * ch, fill=(200, 30, 30))
    d.polygon([(0.22 * cw, body_top), (0.32 * cw, 0.05 * ch), (0.68 * cw, 0.05 * ch),
               (0.8 * cw, body_top)], fill=(185, 25, 25))
    d.polygon([(0.30 * cw, body_top), (0.37 * cw, 0.13 * ch), (0.63 * cw, 0.13 * ch),
               (0.72 * cw, body_top)], fill=(170, 210, 235))
    r = 0.2 * ch
    for cx in (0.22 * cw, 0.78 * cw):
        d.ellipse([cx - r, ch - 2 * r, cx + r, ch], fill=(25, 25, 25))
        d.ellipse([cx - r / 2, ch - 1.5 * r, cx + r / 2, ch - 0.5 * r], fill=(160, 160, 160))
    return img.resize((max(4, round(cw / 4)), max(3, round(ch / 4))), Image.LANCZOS)


def paint_frame(position: float, goal: float, h: int, w: int) -> np.ndarray:
    """The textured scene with the car at ``position``, as uint8 ``[h, w, 3]``."""
    frame = _background(h, w, goal).copy()
    slope = math.atan(1.35 * math.cos(3 * position) * h / w)  # in pixels
    car = _car_sprite(w).rotate(math.degrees(slope), resample=Image.BICUBIC, expand=True)
    px, py = _to_pixels(position, hill(position), h, w)
    # Lift the car so its wheels sit on the road, along the normal of the slope.
    lift = 0.5 * _car_sprite(w).height
    cx, cy = px - lift * math.sin(slope), py - lift * math.cos(slope)
    frame.paste(car, (round(cx - car.width / 2), round(cy - car.height / 2)), car)
    return np.array(frame)  # writable: TorchRL wraps it without a copy
