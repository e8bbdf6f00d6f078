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

from vlmrm.rl.envs import make_base_env, vector_envs
from vlmrm.rl.gymstate import FORMAT, gym_state, load_gym_state


def env_state(env: EnvBase) -> dict[str, Any]:
    """The state of ``env`` (a single env, a SerialEnv of them or ``env.parallel``'s
    workers); the two batched kinds have the same layout."""
    vector = vector_envs(env)
    if vector is not None:
        return {"format": FORMAT, "batched": True, "envs": vector.gym_states()}
    if isinstance(env, BatchedEnvBase):
        _start(env)
        return {"format": FORMAT, "batched": True, "envs": _dispatch(env, "gym_state")}
    return {"format": FORMAT, "batched": False, "envs": [gym_state(_gym_env(env))]}


def load_env_state(env: EnvBase, state: dict[str, Any]) -> None:
    """Put ``env`` (built from the same config as the captured one) into ``state``."""
    if state.get("format") != FORMAT:
        raise ValueError(f"env state has format {state.get('format')!r}, expected {FORMAT}")
    states = state["envs"]
    vector = vector_envs(env)
    if vector is not None:
        if len(states) != vector.batch_size[0]:
            raise ValueError(f"env state holds {len(states)} envs; the env has "
                             f"{vector.batch_size[0]}")
        vector.load_gym_states(states)
        return
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
    # Checked before any env is made: only make_base_env's envs have the methods called.
    for fn in env.create_env_fn:
        if getattr(fn, "func", fn) is not make_base_env:
            raise ValueError(f"cannot capture the state of a {type(env).__name__} whose envs "
                             f"come from {fn!r}: build it with vlmrm.rl.envs.make_env")
    if env.is_closed:
        env.start()


def _dispatch(env: BatchedEnvBase, method: str, *args: Any) -> list[Any]:
    """Call ``method`` on each env of a SerialEnv, in turn; the methods are
    :class:`vlmrm.rl.envs.ResumableEnv`'s."""
    return getattr(env, method)(*args)


def _gym_env(env: EnvBase) -> gym.Env:
    """The Gymnasium env inside a TransformedEnv(GymWrapper(...))."""
    base = env.base_env if isinstance(env, TransformedEnv) else env
    if not isinstance(base, GymWrapper):
        raise ValueError(f"cannot capture the state of {type(base).__name__}: "
                         "expected a GymWrapper (inside a TransformedEnv)")
    return base._env


