"""Command-line values of ``vlmrm evaluate-reward`` / ``vlmrm dataset``, checked without torch.

Backend spec syntax (``--backends``): a comma-separated list of ``BACKEND:MODEL`` items, split
at the first colon, so model names may hold colons themselves:

- ``open_clip:vlmrm-demo``, ``open_clip:ViT-B-32/laion2b_s34b_b79k``,
  ``open_clip:local-dir:/path/to/dir``, ``hf_clip:/path/to/saved_model``,
  ``siglip:google/siglip-base-patch16-224``, ``xclip:microsoft/xclip-base-patch32`` (video),
  ``hf_judge:HuggingFaceTB/SmolVLM-256M-Instruct`` (judge);
- ``config``: the config's own ``reward.backend`` / ``reward.model``.

Every other reward setting (``pretrained``, ``precision``, ``resize``, ``batch_size``,
``device``, ``cache_dir``, ``model_config``) comes from the config for every spec; those of
one kind go to that kind only (``window`` to video models, ``question`` to judges, the
transform to the kind its first formula fits: ``vlmrm.commands.evaluate_reward.reward_for``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vlmrm.backends.registry import GROUND_TRUTH, backend_entry
from vlmrm.config.schema import RewardConfig
from vlmrm.errors import ConfigError
from vlmrm.fileio import is_new_dir
from vlmrm.reward.spec import FORMULAS, check_param

DEFAULT_ALPHAS = "0,0.25,0.5,0.75,1"
CONFIG_SPEC = "config"


@dataclass(frozen=True)
class BackendSpec:
    """One reward model to evaluate: a registered backend and a model name in its convention."""

    backend: str
    model: str

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.model}"


def parse_backend_specs(text: str | None, reward: RewardConfig) -> list[BackendSpec]:
    """``--backends`` -> specs (default: the config's own model); ConfigError naming a bad one."""
    items = [CONFIG_SPEC] if text is None else [s.strip() for s in text.split(",")]
    specs = [_parse_spec(item, reward) for item in items]
    labels = [s.label for s in specs]
    dup = next((x for x in labels if labels.count(x) > 1), None)
    if dup is not None:
        raise ConfigError(f"--backends lists {dup!r} twice; give each model once.")
    return specs


def _parse_spec(item: str, reward: RewardConfig) -> BackendSpec:
    if item == CONFIG_SPEC:
        if reward.backend == GROUND_TRUTH:
            raise ConfigError("The config's reward.backend is ground_truth, which has no model "
                              "to evaluate. Pass --backends BACKEND:MODEL,... e.g. "
                              "--backends open_clip:vlmrm-demo.")
        return BackendSpec(reward.backend, reward.model)
    backend, sep, model = item.partition(":")
    if not sep or not backend or not model:
        raise ConfigError(f"--backends item {item!r} is not BACKEND:MODEL. Write e.g. "
                          "open_clip:vlmrm-demo or hf_clip:/path/to/model (or 'config' for the "
                          "config's own model), comma-separated.")
    if backend == GROUND_TRUTH:
        raise ConfigError(f"--backends item {item!r}: ground_truth is the reference every model "
                          "is compared with, not a model. Remove it.")
    backend_entry(backend)  # a ConfigError listing the known backends
    return BackendSpec(backend, model)


def parse_alphas(text: str) -> list[float]:
    """``--alphas 0,0.5,1`` -> [0.0, 0.5, 1.0]; each in [0, 1], no repeats."""
    try:
        alphas = [check_param("goal_baseline", "alpha", float(x), "--alphas")
                  for x in text.split(",")]
    except ValueError:  # not a number, or outside goal_baseline's rule for alpha
        rule = FORMULAS["goal_baseline"].params["alpha"].rule
        raise ConfigError(f"--alphas {text!r} must be comma-separated numbers {rule}, e.g. "
                          f"--alphas {DEFAULT_ALPHAS}.") from None
    if len(set(alphas)) != len(alphas):
        raise ConfigError(f"--alphas {text!r} repeats a value; give each alpha once.")
    return alphas


def check_out_dir(path: str | os.PathLike) -> Path:
    """``--out`` must be new or empty: outputs of two runs are never mixed."""
    if not is_new_dir(path):
        raise ConfigError(f"--out {str(path)!r} already exists and is not an empty folder; "
                          "nothing was written. Pass a new folder, or remove that one first.")
    return Path(path)


def check_positive(flag: str, value: int) -> int:
    if value < 1:
        raise ConfigError(f"{flag} {value} must be at least 1.")
    return value


def check_dataset_source(config: str | None, checkpoint: str | None) -> None:
    """``vlmrm dataset`` takes a config (random policy) or a checkpoint (its agent), not both."""
    if config is not None and checkpoint is not None:
        raise ConfigError("Pass --config or --checkpoint, not both: a checkpoint carries its "
                          "run's config (change keys with key=value overrides).")
    if config is None and checkpoint is None:
        raise ConfigError("Pass --config FILE (random-policy rollouts) or --checkpoint CKPT "
                          "(the trained agent's rollouts).")
