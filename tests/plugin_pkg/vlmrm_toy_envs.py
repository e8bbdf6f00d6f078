"""TEST-ONLY third-party Gymnasium env: a worked example of an env living in another package.

``ToyReach-v0``: a point in the unit square moves towards a goal (2-D continuous actions);
the reward is minus the distance to the goal, also reported as ``info["distance"]`` (a
numeric info key, for ``mix`` terms). Importing this module registers the id, so
vlmrm runs it with Gymnasium's ``module:id`` form and nothing else installed::

    vlmrm fit --config configs/quickstart.yaml env.id=vlmrm_toy_envs:ToyReach-v0 \\
        reward.backend=ground_truth

It renders ``rgb_array`` frames with numpy alone (no pygame, no MuJoCo), and its state
(position, goal) is not in vlmrm's list of capturable envs: a resumed run restarts its
episodes.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "ToyReach-v0"
SIZE = 64
#: How far one step moves the point at full action.
SPEED = 0.1


class ToyReachEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, observation: str = "state",
                 action: str = "box") -> None:
        """``observation="image"`` / ``"dict"`` and ``action="multi_discrete"`` give spaces
        vlmrm refuses (the tests check how)."""
        self.render_mode = render_mode
        state = spaces.Box(-1.0, 2.0, shape=(4,), dtype=np.float32)
        self.observation_space = {
            "state": state, "dict": spaces.Dict({"state": state}),
            "image": spaces.Box(0, 255, shape=(SIZE, SIZE, 3), dtype=np.uint8)}[observation]
        self.action_space = {
            "box": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            "multi_discrete": spaces.MultiDiscrete([3, 3])}[action]
        self.observation_kind = observation
        self.position = np.zeros(2, dtype=np.float32)
        self.goal = np.zeros(2, dtype=np.float32)

    def _obs(self) -> Any:
        state = np.concatenate([self.position, self.goal]).astype(np.float32)
        if self.observation_kind == "image":
            return self.render()
        return {"state": state} if self.observation_kind == "dict" else state

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.position = self.np_random.uniform(0, 1, 2).astype(np.float32)
        self.goal = self.np_random.uniform(0, 1, 2).astype(np.float32)
        return self._obs(), {}

    def step(self, action):
        if isinstance(self.action_space, spaces.MultiDiscrete):
            action = np.asarray(action) - 1
        move = np.clip(np.asarray(action, dtype=np.float32), -1, 1) * SPEED
        self.position = np.clip(self.position + move, 0, 1).astype(np.float32)
        distance = float(np.linalg.norm(self.position - self.goal))
        return self._obs(), -distance, distance < 0.05, False, {"distance": distance}

    def render(self) -> np.ndarray:
        frame = np.full((SIZE, SIZE, 3), 235, dtype=np.uint8)
        for point, colour in ((self.goal, (40, 170, 60)), (self.position, (200, 40, 40))):
            row, col = (point[::-1] * (SIZE - 6)).astype(int)
            frame[row:row + 6, col:col + 6] = colour
        return frame


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=f"{__name__}:ToyReachEnv", max_episode_steps=50)
