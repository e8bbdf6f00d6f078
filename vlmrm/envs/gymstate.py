"""Pickle-free capture and restore of one Gymnasium env's state (used by
:mod:`vlmrm.envs.envstate`, and inside ``env.parallel`` workers by
:class:`vlmrm.envs.gymenv.WorkerEnv`).

The state is: the attributes of every layer of the wrapper chain named in
:data:`LAYER_ATTRS` (a layer whose exact class is not listed is refused), the unwrapped
env's ``np_random`` bit generator and, for MuJoCo envs, the physics (:mod:`mujoco` data).

Torch-free, for the workers: :func:`capture_arrays` holds numpy arrays, and
:func:`gym_state` (what checkpoints store) is that with every array a tensor.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.continuous_mountain_car import Continuous_MountainCarEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv
from gymnasium.wrappers import AddRenderObservation, OrderEnforcing, PassiveEnvChecker, TimeLimit

from vlmrm.envs.wrappers import EpisodeEndIsTerminal, NoEarlyTermination, OwnGLContext
from vlmrm.scenes.cartpole import PaperCartPoleEnv
from vlmrm.scenes.mountaincar import PaperMountainCarEnv

#: Bumped when the layout of the state changes.
FORMAT = 1

#: The attributes that change while an env runs, per exact class of each layer (wrappers
#: and the unwrapped env). An empty tuple: the layer keeps no state across steps.
#: PassiveEnvChecker's ``_previous_data`` is left out: it only feeds a warning.
LAYER_ATTRS: dict[type, tuple[str, ...]] = {
    AddRenderObservation: (),
    TimeLimit: ("_elapsed_steps",),
    OrderEnforcing: ("_has_reset",),
    PassiveEnvChecker: ("checked_reset", "checked_step", "checked_render"),
    NoEarlyTermination: (),
    EpisodeEndIsTerminal: (),
    OwnGLContext: (),
    CartPoleEnv: ("state", "steps_beyond_terminated"),
    PaperCartPoleEnv: ("state", "steps_beyond_terminated"),
    Continuous_MountainCarEnv: ("state",),
    PaperMountainCarEnv: ("state", "reached_flag"),
    PendulumEnv: ("state", "last_u"),
    HumanoidEnv: (),
}

#: Unwrapped env classes whose MuJoCo physics is part of the state. Not yet stock envs
#: filmed by the renderer's own tracking camera (e.g. HalfCheetah-v5): that camera keeps
#: state between frames, outside ``mjData``, and its pixels did not resume exactly.
MUJOCO_ENVS: tuple[type, ...] = (HumanoidEnv,)


def _layers(env: gym.Env) -> list[gym.Env]:
    """The wrapper chain, outermost first, ending with the unwrapped env."""
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _env_id(env: gym.Env) -> str:
    spec = env.unwrapped.spec
    return spec.id if spec is not None else type(env.unwrapped).__name__


def uncapturable_layer(env: gym.Env) -> str | None:
    """The first layer of ``env`` (outermost first) whose state cannot be captured, by class
    name; None when :func:`gym_state` can capture the whole env."""
    for layer in _layers(env):
        if type(layer) not in LAYER_ATTRS:
            return _class_name(layer)
    return None


def _check_supported(env: gym.Env) -> list[gym.Env]:
    layers = _layers(env)
    for layer in layers:
        if type(layer) not in LAYER_ATTRS:
            raise ValueError(f"env {_env_id(env)!r}: cannot capture the state of "
                             f"{type(layer).__module__}.{type(layer).__qualname__} "
                             "(not in vlmrm.envs.gymstate.LAYER_ATTRS)")
    return layers


def _class_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def gym_state(env: gym.Env) -> dict[str, Any]:
    """The state of one Gymnasium env and its wrappers."""
    return to_tensors(capture_arrays(env))


def load_gym_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Restore :func:`gym_state`'s ``state`` into ``env`` (same id and wrapper chain)."""
    restore_arrays(env, to_arrays(state))


def to_tensors(tree: Any) -> Any:
    """``tree`` (dicts, lists, plain values) with every numpy array a tensor."""
    import torch  # only in the training process: workers never import torch

    return _map_leaves(tree, np.ndarray, torch.from_numpy)


def to_arrays(tree: Any) -> Any:
    """The inverse of :func:`to_tensors`."""
    import torch

    return _map_leaves(tree, torch.Tensor, lambda t: t.numpy())


def _map_leaves(tree: Any, kind: type, fn: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _map_leaves(v, kind, fn) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_map_leaves(v, kind, fn) for v in tree]
    return fn(tree) if isinstance(tree, kind) else tree


def capture_arrays(env: gym.Env) -> dict[str, Any]:
    """:func:`gym_state` with numpy arrays where it holds tensors."""
    layers = _check_supported(env)
    core = env.unwrapped
    return {
        "id": _env_id(env),
        "chain": [_class_name(layer) for layer in layers],
        "layers": [{a: _encode(getattr(layer, a)) for a in LAYER_ATTRS[type(layer)]}
                   for layer in layers],
        "np_random": _rng_state(core),
        "physics": _physics_state(core) if isinstance(core, MUJOCO_ENVS) else None,
    }


def restore_arrays(env: gym.Env, state: dict[str, Any]) -> None:
    """Restore :func:`capture_arrays`'s ``state`` into ``env`` (same id and wrapper chain)."""
    layers = _check_supported(env)
    chain = [_class_name(layer) for layer in layers]
    if state["id"] != _env_id(env) or state["chain"] != chain:
        raise ValueError(f"env state of {state['id']!r} (wrappers {state['chain']}) does not "
                         f"fit env {_env_id(env)!r} (wrappers {chain})")
    for layer, attrs in zip(layers, state["layers"], strict=True):
        if set(attrs) != set(LAYER_ATTRS[type(layer)]):  # only ever set the listed names
            raise ValueError(f"env state of {state['id']!r} has attributes {sorted(attrs)} "
                             f"for {_class_name(layer)}")
        for name, value in attrs.items():
            setattr(layer, name, _decode(value))
    core = env.unwrapped
    _load_rng_state(core, state["np_random"])
    if state["physics"] is not None:
        _load_physics_state(core, state["physics"])


def _encode(value: Any) -> Any:
    """numpy values tagged (so that, stored as tensors, they come back as numpy); plain
    scalars as is."""
    if isinstance(value, np.ndarray):
        return {"ndarray": value.copy()}
    if isinstance(value, np.generic):
        return {"npscalar": np.array(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"cannot capture a value of type {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "ndarray" in value:
            return value["ndarray"].copy()
        return value["npscalar"][()]
    return value


def _rng_state(core: gym.Env) -> dict[str, Any] | None:
    """The bit generator behind ``np_random`` (reset noise); None if never made."""
    rng = core._np_random
    if rng is None:
        return None
    return {"bit_generator": dict(rng.bit_generator.state), "seed": core._np_random_seed}


def _load_rng_state(core: gym.Env, state: dict[str, Any] | None) -> None:
    if state is None:
        core._np_random, core._np_random_seed = None, None
        return
    bits = state["bit_generator"]
    generator = np.random.Generator(getattr(np.random, bits["bit_generator"])())
    generator.bit_generator.state = bits
    core._np_random, core._np_random_seed = generator, state["seed"]


def _data_arrays(data: mujoco.MjData) -> list[str]:
    return [name for name in dir(data) if not name.startswith("_")
            and isinstance(getattr(data, name), np.ndarray)]


def _physics_state(core: Any) -> dict[str, Any]:
    """Every array of ``mjData`` plus the integration state (time, plugin state).

    Not just qpos/qvel: Gymnasium steps without a final ``mj_forward``, so the positions of
    bodies (used by the next step's reward, e.g. Humanoid's centre of mass, and by the
    renderer) are those of the last sub-step's start, which cannot be recomputed."""
    model, data = core.model, core.data
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    full = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, full, spec)
    arrays = {name: getattr(data, name).copy() for name in _data_arrays(data)}
    return {"integration": full, "arrays": arrays}


def _load_physics_state(core: Any, state: dict[str, Any]) -> None:
    model, data = core.model, core.data
    for name, value in state["arrays"].items():
        target = getattr(data, name)
        # Arrays sized by this step's contacts/constraints (efc_*, island_*, ...) can differ
        # in shape; they are scratch that the next mj_step recomputes before using them.
        if target.shape == tuple(value.shape):
            target[...] = value
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    mujoco.mj_setState(model, data, state["integration"], spec)
