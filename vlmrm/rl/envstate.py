"""Pickle-free capture and restore of the envs :func:`vlmrm.rl.envs.make_env` builds.

After :func:`load_env_state` on a freshly built env of the same config, stepping it with the
same actions gives bit-identical observations, rewards, done flags, ``is_success`` and
pixels, across episode ends and automatic resets (the reset noise generator is captured).

Per Gymnasium env the state is: the attributes of every layer of its wrapper chain named in
:data:`vlmrm.rl.gymstate.LAYER_ATTRS` (a layer whose exact class is not listed is refused),
the unwrapped env's ``np_random`` bit generator and, for MuJoCo envs, the physics.
The result holds only tensors, Python scalars, strings, None, lists and dicts, so
``torch.save`` / ``torch.load(weights_only=True)`` round-trips it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from torchrl.envs import EnvBase, GymWrapper, TransformedEnv
from torchrl.envs.batched_envs import BatchedEnvBase

from vlmrm.rl.envs import make_base_env, make_worker_env
from vlmrm.rl.gymstate import FORMAT, gym_state, load_gym_state


def env_state(env: EnvBase) -> dict[str, Any]:
    """The state of ``env`` (a single env or a Serial/ParallelEnv of them)."""
    if isinstance(env, BatchedEnvBase):
        _start(env)
        return {"format": FORMAT, "batched": True, "envs": _dispatch(env, "gym_state")}
    return {"format": FORMAT, "batched": False, "envs": [gym_state(_gym_env(env))]}


def load_env_state(env: EnvBase, state: dict[str, Any]) -> None:
    """Put ``env`` (built from the same config as the captured one) into ``state``."""
    if state.get("format") != FORMAT:
        raise ValueError(f"env state has format {state.get('format')!r}, expected {FORMAT}")
    states = state["envs"]
    if not isinstance(env, BatchedEnvBase):
        if state["batched"] or len(states) != 1:
            raise ValueError(f"env state holds {len(states)} batched envs; got a single env")
        load_gym_state(_gym_env(env), states[0])
        return
    _start(env)
    if len(states) != env.num_workers:
        raise ValueError(f"env state holds {len(states)} envs; the env has {env.num_workers}")
    for i, one in enumerate(states):
        # A view of one worker: dispatched calls send the same arguments to all workers.
        _dispatch(env[i], "load_gym_state", one)


def _start(env: BatchedEnvBase) -> None:
    # Checked before any call reaches a worker: a ParallelEnv worker dies on a missing method
    # and the parent would wait for its answer for ever.
    for fn in env.create_env_fn:
        if getattr(fn, "func", fn) not in (make_base_env, make_worker_env):
            raise ValueError(f"cannot capture the state of a {type(env).__name__} whose envs "
                             f"come from {fn!r}: build it with vlmrm.rl.envs.make_env")
    if env.is_closed:
        env.start()


def _dispatch(env: BatchedEnvBase, method: str, *args: Any) -> list[Any]:
    """Call ``method`` on each worker env (SerialEnv: in turn; ParallelEnv: in its process);
    the methods are :class:`vlmrm.rl.envs.ResumableEnv`'s."""
    return getattr(env, method)(*args)


def _gym_env(env: EnvBase) -> gym.Env:
    """The Gymnasium env inside a TransformedEnv(GymWrapper(...))."""
    base = env.base_env if isinstance(env, TransformedEnv) else env
    if not isinstance(base, GymWrapper):
        raise ValueError(f"cannot capture the state of {type(base).__name__}: "
                         "expected a GymWrapper (inside a TransformedEnv)")
    return base._env


