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
    """Render with this env's OpenGL context current in the calling thread, then release it.

    Gymnasium's MuJoCo renderer makes its context current once, in the thread that created
    it. Two things went wrong with that: with several MuJoCo envs in one process
    (``env.parallel=false``) an env drew with another env's context (on some Mesa builds,
    frames with black rows), and a render from another thread (the collector thread of
    ``agent.overlap``) had no context at all and read back all-black frames. An EGL context
    can be current in one thread at a time, so it is released after each frame."""

    def render(self):
        renderer = self.env.unwrapped.mujoco_renderer
        if renderer.viewer is not None:
            renderer.viewer.make_context_current()
        try:
            return self.env.render()
        finally:
            if renderer.viewer is not None:
                release_gl_context(renderer.viewer.opengl_context)


def release_gl_context(context) -> None:
    """Make no context current in this thread (EGL and GLFW; OSMesa needs no release)."""
    module = type(context).__module__
    if module == "mujoco.egl":
        from mujoco import egl
        from OpenGL import EGL

        EGL.eglMakeCurrent(egl.EGL_DISPLAY, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE,
                           EGL.EGL_NO_CONTEXT)
    elif module == "mujoco.glfw":
        import glfw

        glfw.make_context_current(None)
