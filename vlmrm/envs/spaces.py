"""Which Gymnasium spaces vlmrm's networks take: flat float vectors in, Box or Discrete
actions out. Anything else is refused when the env is first made, before a run starts,
rather than at the first update.

Discrete observations are one-hot encoded (Gymnasium's ``FlattenObservation``) and flat
integer observations cast to float32 (``DtypeObservation``): the networks then see a flat
float vector, as for any other env.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import DtypeObservation, FlattenObservation

from vlmrm.errors import ConfigError

#: How a user gets past a refused space: their own registered id that wraps the env.
OWN_ID = ("register an env id whose entry point applies it (e.g. in a module of your own "
          "package) and pass env.id=your_package.module:YourEnv-v0")


def fit_spaces(env: gym.Env, env_id: str) -> gym.Env:
    """``env`` with spaces the networks take (one-hot Discrete observations), or a
    :class:`ConfigError` naming the space and the wrapper that would fix it."""
    if isinstance(env.observation_space, spaces.Discrete):
        env = FlattenObservation(env)
    space = env.observation_space
    if (isinstance(space, spaces.Box) and len(space.shape) == 1
            and not np.issubdtype(space.dtype, np.floating)):
        env = DtypeObservation(env, np.float32)  # counts, flags, one-hot codes
    _check_observations(env.observation_space, env_id)
    _check_actions(env.action_space, env_id)
    return env


def _check_observations(space: gym.Space, env_id: str) -> None:
    if isinstance(space, (spaces.Dict, spaces.Tuple)):
        fix = ("gymnasium.wrappers.FlattenObservation (one flat vector of all parts), or "
               "FilterObservation to keep the parts you need")
    elif not isinstance(space, spaces.Box):
        fix = "an ObservationWrapper that returns a flat float vector (a Box of one dimension)"
    elif space.shape is not None and len(space.shape) > 1:
        kind = "an image" if space.dtype == np.uint8 else "a multi-dimensional array"
        fix = (f"it looks like {kind}, and the networks are MLPs over a flat vector: use the "
               "env's state observations, or gymnasium.wrappers.FlattenObservation for a "
               "small array (vlmrm renders the frames the reward model scores itself)")
    else:
        return
    raise ConfigError(f"env.id={env_id!r} has the observation space {space}, which vlmrm's "
                      f"networks cannot take (they take a flat float vector, a Box of one "
                      f"dimension). Way out: {fix}; {OWN_ID}.")


def _check_actions(space: gym.Space, env_id: str) -> None:
    if isinstance(space, spaces.Discrete) or (
            isinstance(space, spaces.Box) and len(space.shape) == 1
            and np.issubdtype(space.dtype, np.floating)):
        return
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        fix = "an ActionWrapper that maps one Discrete action to a combination"
    else:
        fix = ("an ActionWrapper whose action space is a float Box of one dimension "
               "(continuous actions) or a Discrete one")
    raise ConfigError(f"env.id={env_id!r} has the action space {space}, which vlmrm's agents "
                      f"cannot take (SAC acts in a float Box of one dimension or a Discrete "
                      f"space). Way out: {fix}; {OWN_ID}.")
