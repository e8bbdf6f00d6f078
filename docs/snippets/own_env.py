"""Train an agent with a VLM reward on an environment of your own.

Run: python docs/snippets/own_env.py [key=value ...]
(tests/test_docs.py builds its config and steps and renders its env as training does.)
"""

import sys

import gymnasium as gym
import numpy as np


class DotToCorner(gym.Env):
    """A red dot moved by 2-D velocity commands; it should reach the top-right corner."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode="rgb_array", size=128):
        self.render_mode, self.size = render_mode, size
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, size=2).astype(np.float32)
        return self.pos.copy(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.1 * np.asarray(action, np.float32), -1, 1)
        reward = -float(np.linalg.norm(self.pos - 1.0))  # ground truth, logged, not learned
        return self.pos.copy(), reward, False, False, {}

    def render(self):
        frame = np.full((self.size, self.size, 3), 255, np.uint8)
        x, y = ((self.pos * [1, -1] + 1) / 2 * (self.size - 8)).astype(int)
        frame[y:y + 8, x:x + 8] = (220, 30, 30)
        return frame


# At module level: the collector process imports this file again (Python's spawn start
# method) and needs the id registered there too.
gym.register(id="MyDotToCorner-v0", entry_point=DotToCorner, max_episode_steps=50)


def config(overrides=()):
    from vlmrm.config import load_config

    return load_config(None, [
        "env.id=MyDotToCorner-v0",
        "reward.goal_prompts=[a red dot in the top right corner]",
        "reward.baseline_prompts=[a red dot]",
        "agent.total_env_steps=20000",
        *overrides,  # key=value, as on vlmrm's command line
    ])


if __name__ == "__main__":
    from vlmrm.commands.fit import fit

    fit(config(sys.argv[1:]))
