"""Several MuJoCo envs in one process each draw with their own OpenGL context."""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from vlmrm.config.schema import EnvConfig
from vlmrm.envs.gymenv import make_gym_env


def _address(handle) -> int | None:
    return ctypes.cast(handle, ctypes.c_void_p).value


@pytest.mark.skipif(os.environ.get("MUJOCO_GL", "egl") != "egl", reason="checks EGL contexts")
def test_each_env_renders_with_its_own_context_current(monkeypatch):
    from OpenGL import EGL

    cfg = EnvConfig(id="vlmrm/Humanoid-v0", episode_length=5)
    envs = [make_gym_env(cfg, (32, 32)) for _ in range(2)]
    before = _address(EGL.eglGetCurrentContext())
    try:
        frames = {}
        for i in (0, 1, 0, 1, 0):  # each render follows one by the other env
            envs[i].reset(seed=i)
            viewer = envs[i].unwrapped.mujoco_renderer.viewer
            if viewer is not None:  # the context is made current for the render only
                monkeypatch.setattr(viewer, "make_context_current", _checked(viewer))
            frames[i] = envs[i].render()
            assert _address(EGL.eglGetCurrentContext()) == before, i
        assert frames[0].shape == (32, 32, 3) and not np.array_equal(frames[0], frames[1])
        assert frames[0].mean() > 20 and frames[1].mean() > 20
    finally:
        for env in envs:
            env.close()


def _checked(viewer):
    from OpenGL import EGL

    make = viewer.make_context_current

    def make_and_check():
        make()
        assert _address(EGL.eglGetCurrentContext()) == _address(viewer.opengl_context._context)
    return make_and_check


def test_a_render_from_another_thread_draws_the_scene():
    """agent.overlap collects on a thread: its frames are the main thread's frames."""
    cfg = EnvConfig(id="vlmrm/Humanoid-v0", episode_length=5)
    env = make_gym_env(cfg, (32, 32))
    try:
        env.reset(seed=3)
        here = env.render()
        with ThreadPoolExecutor(1) as pool:
            there = pool.submit(env.render).result()
        assert here.mean() > 20
        np.testing.assert_array_equal(there, here)
    finally:
        env.close()
