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
