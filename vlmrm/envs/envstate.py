"""Pickle-free capture and restore of the envs :func:`vlmrm.envs.factory.make_env` builds.

After :func:`load_env_state` on a freshly built env of the same config, stepping it with the
same actions gives bit-identical observations, rewards, done flags, ``is_success`` and
pixels, across episode ends and automatic resets (the reset noise generator is captured).

Per Gymnasium env the state is: the attributes of every layer of its wrapper chain named in
:data:`vlmrm.envs.gymstate.LAYER_ATTRS` (a layer whose exact class is not listed is refused),
the unwrapped env's ``np_random`` bit generator and, for MuJoCo envs, the physics.
The result holds only tensors, Python scalars, strings, None, lists and dicts, so
``torch.save`` / ``torch.load(weights_only=True)`` round-trips it.

Envs with a layer outside that list (Acrobot, Hopper, third-party envs, ...) are captured
without their state (``exact=False``, decided once per run by :func:`capture_blocker`):
the rest of a checkpoint is still exact, and on resume such envs are reseeded with
:func:`restart_seed` and their episodes start afresh.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from torchrl.envs import EnvBase, GymWrapper, TransformedEnv
from torchrl.envs.batched_envs import BatchedEnvBase

from vlmrm.envs.factory import make_base_env, vector_envs
from vlmrm.envs.gymstate import FORMAT, gym_state, load_gym_state, uncapturable_layer

#: Said once at the start of a run whose envs' state cannot be captured.
RESTART_NOTE = "resume is exact except that episodes in progress restart"


def capture_blocker(env: EnvBase) -> str | None:
    """Why the state of ``env`` (a single env of a run's config, in this process) cannot be
    captured: the class of its first layer missing from
    :data:`vlmrm.envs.gymstate.LAYER_ATTRS`; None when it can. Every env of one config has
    the same wrapper chain, so one env decides for all of them (a ``ParallelEnv`` worker
    is never asked: a worker that raises leaves its parent waiting)."""
    return uncapturable_layer(_gym_env(env))


def restart_note(env_id: str, blocker: str) -> str:
    return (f"vlmrm: env.id={env_id!r}: the state of {blocker} cannot be captured, so "
            f"{RESTART_NOTE} (exact for the envs listed in vlmrm.envs.gymstate.LAYER_ATTRS)")


def restart_seed(seed: int, steps: int) -> int:
    """The seed envs restart from when a run resumes at ``steps`` env steps (this rank's),
    from their original ``seed``: the same resume restarts the same episodes, and another
    resume step other ones."""
    return int(np.random.SeedSequence([seed, steps]).generate_state(1)[0]) >> 1


def env_state(env: EnvBase, exact: bool = True) -> dict[str, Any]:
    """The state of ``env`` (a single env or a Serial/ParallelEnv of them); without
    ``exact``, only a marker that the envs restart on load."""
    if not exact:
        return {"format": FORMAT, "batched": isinstance(env, BatchedEnvBase)
                or vector_envs(env) is not None, "envs": None}
    vector = vector_envs(env)
    if vector is not None:
        return {"format": FORMAT, "batched": True, "envs": vector.gym_states()}
    if isinstance(env, BatchedEnvBase):
        _start(env)
        return {"format": FORMAT, "batched": True, "envs": _dispatch(env, "gym_state")}
    return {"format": FORMAT, "batched": False, "envs": [gym_state(_gym_env(env))]}


def load_env_state(env: EnvBase, state: dict[str, Any], restart: int | None = None) -> bool:
    """Put ``env`` (built from the same config as the captured one) into ``state``; for a
    state captured without ``exact``, reseed it with ``restart`` instead and return True
    (the caller resets it: its episodes restart)."""
    if state.get("format") != FORMAT:
        raise ValueError(f"env state has format {state.get('format')!r}, expected {FORMAT}")
    states = state["envs"]
    if states is None:
        if restart is None:
            raise ValueError("env state was captured without the envs' state; give the seed "
                             "their episodes restart from")
        env.set_seed(restart)
        return True
    vector = vector_envs(env)
    if vector is not None:
        if len(states) != vector.batch_size[0]:
            raise ValueError(f"env state holds {len(states)} envs; the env has "
                             f"{vector.batch_size[0]}")
        vector.load_gym_states(states)
        return False
    if not isinstance(env, BatchedEnvBase):
        if state["batched"] or len(states) != 1:
            raise ValueError(f"env state holds {len(states)} batched envs; got a single env")
        load_gym_state(_gym_env(env), states[0])
        return False
    _start(env)
    if len(states) != env.num_workers:
        raise ValueError(f"env state holds {len(states)} envs; the env has {env.num_workers}")
    for i, one in enumerate(states):
        # A view of one worker: dispatched calls send the same arguments to all workers.
        _dispatch(env[i], "load_gym_state", one)
    return False


def _start(env: BatchedEnvBase) -> None:
    # Checked before any env is made: only make_base_env's envs have the methods called.
    for fn in env.create_env_fn:
        if getattr(fn, "func", fn) is not make_base_env:
            raise ValueError(f"cannot capture the state of a {type(env).__name__} whose envs "
                             f"come from {fn!r}: build it with vlmrm.envs.factory.make_env")
    if env.is_closed:
        env.start()


def _dispatch(env: BatchedEnvBase, method: str, *args: Any) -> list[Any]:
    """Call ``method`` on each env of a SerialEnv, in turn; the methods are
    :class:`vlmrm.envs.factory.ResumableEnv`'s."""
    return getattr(env, method)(*args)


def _gym_env(env: EnvBase) -> gym.Env:
    """The Gymnasium env inside a TransformedEnv(GymWrapper(...))."""
    base = env.base_env if isinstance(env, TransformedEnv) else env
    if not isinstance(base, GymWrapper):
        raise ValueError(f"cannot capture the state of {type(base).__name__}: "
                         "expected a GymWrapper (inside a TransformedEnv)")
    return base._env


