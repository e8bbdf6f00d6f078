"""Several MuJoCo envs in one process each draw with their own OpenGL context."""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest

from vlmrm.config.schema import EnvConfig
from vlmrm.envs.gymenv import make_gym_env


def _address(handle) -> int | None:
    return ctypes.cast(handle, ctypes.c_void_p).value


@pytest.mark.skipif(os.environ.get("MUJOCO_GL", "egl") != "egl", reason="checks EGL contexts")
def test_each_env_renders_with_its_own_context_current():
    from OpenGL import EGL

    cfg = EnvConfig(id="vlmrm/Humanoid-v0", episode_length=5)
    envs = [make_gym_env(cfg, (32, 32)) for _ in range(2)]
    try:
        frames = {}
        for i in (0, 1, 0, 1, 0):  # each render follows one by the other env
            envs[i].reset(seed=i)
            frames[i] = envs[i].render()
            context = envs[i].unwrapped.mujoco_renderer.viewer.opengl_context._context
            assert _address(EGL.eglGetCurrentContext()) == _address(context), i
        assert frames[0].shape == (32, 32, 3) and not np.array_equal(frames[0], frames[1])
    finally:
        for env in envs:
            env.close()
