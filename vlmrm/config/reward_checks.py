"""Checks of the ``reward`` section (torch-free, like every config check): the model, the
prompts, the formula chain each backend kind takes, and a judge's question."""

from __future__ import annotations

import re
import string
from typing import Any

from vlmrm.backends.registry import GROUND_TRUTH, backend_entry, static_kind
from vlmrm.config.rules import as_path, one_of, require
from vlmrm.config.schema import PRECISION_CHOICES, RESIZE_MODES, RewardConfig
from vlmrm.errors import ConfigError
from vlmrm.reward.spec import mix_terms, resolve_transform, show_value

DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


def validate_reward(r: RewardConfig) -> None:
    if r.resize is not None:
        one_of("reward.resize", r.resize, RESIZE_MODES)
    _check_mix_backend(r, reward_transform(r))
    require(DEVICE.fullmatch(r.device) is not None,
            f"reward.device={r.device!r} is not a device name. Use auto, cpu, cuda, cuda:N, "
            "mps, xpu or xpu:N.")
    if r.backend == GROUND_TRUTH:
        return
    require(bool(r.model.strip()) and r.model.isprintable(),
            f"reward.model={r.model!r} is not a model name. Give one in the backend's "
            "convention, e.g. reward.model=ViT-B-32/laion2b_s34b_b79k (see `vlmrm backends`).")
    judge = static_kind(r.backend) == "judge"
    check_question(r, judge)
    required = [("goal_prompts", "a humanoid robot kneeling")]
    if not judge:  # a judge asks about the goal alone: it reads no baseline prompts
        required.append(("baseline_prompts", "a humanoid robot"))
    for name, example in required:
        prompts = list(getattr(r, name))
        require(len(prompts) > 0 and all(p.strip() for p in prompts),
                f"reward.{name}={prompts} must hold at least one non-empty prompt, e.g. "
                f"reward.{name}='[\"{example}\"]'.")
    require(r.precision in PRECISION_CHOICES,
            f"reward.precision={r.precision!r} is not one of {list(PRECISION_CHOICES)}.")
    require(r.batch_size >= 1, f"reward.batch_size={r.batch_size} must be >= 1.")
    require(r.stream_frames >= 0, f"reward.stream_frames={r.stream_frames} must be >= 0 (0 "
            "scores each batch once it is complete).")
    require(all(p.strip() for p in r.negative_prompts),
            f"reward.negative_prompts={list(r.negative_prompts)} holds an empty prompt; remove "
            "it, or leave the list empty.")
    if r.cache_dir is not None:
        cache = as_path("reward.cache_dir", r.cache_dir, "~/.cache/vlmrm")
        require(not cache.exists() or cache.is_dir(),
                f"reward.cache_dir={r.cache_dir!r} exists but is not a directory.")
    if r.model_config is not None:
        require(as_path("reward.model_config", r.model_config, "configs/ARCH.json").is_file(),
                f"reward.model_config={r.model_config!r} is not an existing file. Give the "
                "path of the architecture JSON, e.g. reward.model_config=models/MyViT.json.")
    backend_entry(r.backend)


def _check_mix_backend(r: RewardConfig, spec: list[dict[str, Any]]) -> None:
    require(r.backend != GROUND_TRUTH or mix_terms(spec) is None,
            f"reward.transform ends with mix({show_value(mix_terms(spec))}), but "
            f"reward.backend={GROUND_TRUTH} has no VLM reward to add its terms to. Drop the mix "
            "item, or choose a reward model (`vlmrm backends` lists them).")


def reward_transform(r: RewardConfig) -> list[dict[str, Any]]:
    """The reward chain that reward.alpha and reward.transform describe, checked, every
    parameter filled in (``load_config`` stores it as reward.transform)."""
    try:
        return resolve_transform(r.alpha, r.transform, static_kind(r.backend))
    except ValueError as err:
        if r.transform is None and static_kind(r.backend) == "judge":
            fix = ""
        elif r.transform is None:
            fix = ("Use 0 for plain CLIP similarity, 1 for the goal-baseline direction only.")
        else:
            fix = ("Fix reward.transform in the YAML file or override; `vlmrm fit --help` "
                   "lists the formulas and their parameters.")
        raise ConfigError(f"{err} {fix}".strip()) from None


def check_question(r: RewardConfig, judge: bool) -> None:
    """``reward.question``: a template with ``{goal}`` (each goal prompt goes there) and no
    other field (literal braces are written ``{{`` and ``}}``); read by judge backends only."""
    if judge:
        require(r.window in (None, 1), f"reward.window={r.window}: judge backends score one "
                "frame per reward. Use reward.window=null, or a video backend.")
    q = r.question
    if q is None:
        return
    require(judge, f"reward.question={q!r} is read by judge backends only (kind 'judge', e.g. "
            f"hf_judge); reward.backend={r.backend!r} does not ask questions. Drop "
            "reward.question, or use a judge backend.")
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(q)
                  if f is not None]
    except ValueError as err:
        raise ConfigError(f"reward.question={q!r} is not a valid template ({err}). Write the "
                          "goal as {goal} and literal braces as {{ and }}.") from None
    bad = [f for f, spec, conv in fields if f != "goal" or spec or conv]
    require(bool(fields) and not bad,
            f"reward.question={q!r} must contain {{goal}} (where each goal prompt goes) and no "
            f"other field{f' (found {{{bad[0]}}})' if bad else ''}; write literal braces as "
            "{{ and }}. E.g. reward.question='Is {goal} done? Answer yes or no.'")
    require(bool(q.strip()) and q.isprintable(),
            f"reward.question={q!r} must be one printable line of text.")
