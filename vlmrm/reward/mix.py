"""``mix``: state terms added to the VLM reward, as VLM-RL adds vehicle-state terms to its
CLIP reward.

The formula chain sees only frames, so the terms are added where a collected batch (or an
evaluation episode) is scored: ``reward = vlm_reward + sum_k weight_k * term_k``, where a term
is ``gt_reward`` (the env's own reward) or a numeric key of the env's ``info`` dict, read into
the env's TensorDict by :class:`InfoTerms` when a mix asks for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from torch import Tensor
from torchrl.data import Composite, Unbounded
from torchrl.envs.gym_like import BaseInfoDictReader

from vlmrm.errors import ConfigError
from vlmrm.keys import DONE, GT_REWARD, REWARD


class Mix:
    """Adds ``sum_k weight_k * term_k`` to a VLM reward; ``terms`` is ``{name: weight}``."""

    def __init__(self, terms: Mapping[str, float]) -> None:
        if not terms:
            raise ValueError("mix needs at least one term, e.g. {gt_reward: 0.1}")
        self.terms = {str(k): float(w) for k, w in terms.items()}

    @property
    def info_keys(self) -> list[str]:
        """The terms the env's info dict must provide."""
        return [k for k in self.terms if k != GT_REWARD]

    def add(self, nxt: TensorDictBase, vlm: Tensor) -> Tensor:
        """``vlm`` (shaped like the env's reward) plus the weighted terms of ``nxt``, the
        batch's ``next`` entries (``gt_reward`` is read from ``reward`` when not yet kept)."""
        out = vlm
        for name, weight in self.terms.items():
            key = name if name != GT_REWARD or GT_REWARD in nxt.keys() else REWARD
            term = nxt.get(key, None)
            if term is None:
                raise ConfigError(
                    f"reward.transform mix term {name!r} is not in the collected data (it "
                    f"holds {sorted(map(str, nxt.keys()))}); the env must report it in its "
                    "info dict every step.")
            out = out + weight * term.reshape(vlm.shape).to(vlm.dtype)
        return out

    def __repr__(self) -> str:
        return f"Mix({self.terms})"


class InfoTerms(BaseInfoDictReader):
    """Reads ``keys`` of the env's info dict as float32 per step. A key missing from a
    step's info is a :class:`ConfigError` naming the keys the info does have (at a reset it
    reads 0: many envs report their terms only on steps)."""

    def __init__(self, keys: list[str], env_id: str, batch: tuple[int, ...] = ()) -> None:
        self.keys = list(keys)
        self.env_id = env_id
        self._spec = Composite({k: Unbounded(batch, dtype=torch.float32) for k in keys},
                               shape=())

    @property
    def info_spec(self) -> Composite:
        return self._spec

    def __call__(self, info: dict[str, Any], tensordict: TensorDictBase) -> TensorDictBase:
        is_step = DONE in tensordict.keys()
        for key in self.keys:
            if key in info:
                value = np.asarray(info[key], dtype=np.float32)
                tensordict.set(key, torch.from_numpy(value.copy()).reshape(
                    self._spec[key].shape))
            elif is_step:
                raise ConfigError(missing_info_message(key, self.env_id, info))
            else:
                tensordict.set(key, self._spec[key].zero())
        return tensordict


def missing_info_message(key: str, env_id: str, info: Mapping[str, Any]) -> str:
    have = sorted(k for k in info if not str(k).startswith("_"))
    return (f"reward.transform mix term {key!r} is not a key of {env_id}'s info dict; its "
            f"info has {have or 'no keys'}. Use one of those, or gt_reward for the env's "
            "own reward.")
