"""Gymnasium wrappers vlmrm puts around envs (how an episode ends)."""

from __future__ import annotations

import gymnasium as gym


class NoEarlyTermination(gym.Wrapper):
    """Ignore ``terminated`` so every episode lasts until the time limit (the paper's setting)."""

    def step(self, action):
        obs, reward, _terminated, truncated, info = self.env.step(action)
        return obs, reward, False, truncated, info


class EpisodeEndIsTerminal(gym.Wrapper):
    """A time-limit truncation becomes a terminal state (no bootstrap from the last state):
    ``env.episode_end=terminate``, as the paper's envs signalled the end of their episodes."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated or truncated, False, info


class OwnGLContext(gym.Wrapper):
    """Make this env's OpenGL context current before it renders.

    Gymnasium's MuJoCo renderer makes its context current only when it is created (or when
    one env holds several viewers), so with several MuJoCo envs in one process (``env.parallel
    =false``) an env drew with the context of whichever env rendered first last: on some
    Mesa builds that gave frames with black rows, differing from the same episode rendered
    in a worker process of its own."""

    def render(self):
        viewer = getattr(self.env.unwrapped.mujoco_renderer, "viewer", None)
        if viewer is not None:
            viewer.make_context_current()
        return self.env.render()
