"""Reward-transform specs (``reward.transform``) checked in pure Python, without torch.

A spec is an ordered list of items, each a formula name and its parameters::

    [{"name": "goal_baseline", "alpha": 0.5}, {"name": "threshold", "value": 0.8}]

A bare string is shorthand for an item with default parameters. The chain starts with exactly
one *embedding formula* (image embeddings ``[B, D]`` -> rewards ``[B]``) followed by any
number of *scalar transforms* (rewards ``[B]`` -> ``[B]``). :func:`parse_transform` checks
names, parameter names and ranges and fills in defaults; ``vlmrm.reward.formulas`` builds the
modules from its result. This module imports only the standard library so that config
validation stays cheap.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EMBEDDING = "embedding"  # image embeddings [B, D] -> rewards [B]; exactly one, first
SCALAR = "scalar"  # rewards [B] -> rewards [B]; any number, after the embedding formula

#: Marks a parameter without a default.
REQUIRED: Any = object()


@dataclass(frozen=True)
class Param:
    """One numeric parameter: its default, and the rule a value must satisfy."""

    default: float | None
    rule: str  # human-readable, completes "must be ..."
    ok: Callable[[float], bool]
    nullable: bool = False  # None is allowed (and means "off")


@dataclass(frozen=True)
class FormulaInfo:
    kind: str  # EMBEDDING or SCALAR
    params: Mapping[str, Param]
    summary: str


@dataclass(frozen=True)
class TransformItem:
    """A checked spec item: a known name and all its parameters (defaults filled in)."""

    name: str
    params: dict[str, float | None]


def _finite(v: float) -> bool:
    return math.isfinite(v)


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


FORMULAS: dict[str, FormulaInfo] = {
    "goal_baseline": FormulaInfo(EMBEDDING, {
        "alpha": Param(0.0, "in [0, 1]", lambda v: 0.0 <= v <= 1.0),
    }, "1 - 1/2 ||(x - g) P||^2, the paper's goal-baseline projection (alpha=0: cosine)"),
    "softmax": FormulaInfo(EMBEDDING, {
        # CLIP's trained logit scale is 100, i.e. temperature 0.01.
        "temperature": Param(0.01, "a finite number > 0", _positive),
    }, "probability of the goal among goal, baseline and negative prompts"),
    "contrastive": FormulaInfo(EMBEDDING, {},
                               "goal similarity minus negative (else baseline) similarity"),
    "threshold": FormulaInfo(SCALAR, {
        "value": Param(REQUIRED, "a finite number", _finite),
        "above": Param(1.0, "a finite number", _finite),
        "below": Param(0.0, "a finite number", _finite),
    }, "`above` where reward >= value, else `below` (a binary success reward)"),
    "running_norm": FormulaInfo(SCALAR, {
        "eps": Param(1e-8, "a finite number > 0", _positive),
        "clip": Param(None, "a finite number > 0 or null", _positive, nullable=True),
    }, "(reward - running mean) / sqrt(running var + eps), optionally clipped"),
}


def names(kind: str | None = None) -> list[str]:
    """Known formula names (of one kind, or all), sorted."""
    return sorted(n for n, info in FORMULAS.items() if kind is None or info.kind == kind)


def default_transform(alpha: float = 0.0) -> list[dict[str, Any]]:
    """The paper's reward: the goal-baseline projection alone."""
    return [{"name": "goal_baseline", "alpha": alpha}]


def parse_transform(spec: Sequence[Any], where: str = "reward.transform") -> list[TransformItem]:
    """Check a spec and fill in defaults; raise ``ValueError`` naming the bad item.

    ``where`` prefixes messages, e.g. ``reward.transform[1]: unknown formula 'softmx'``.
    """
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence) or len(spec) == 0:
        raise ValueError(f"{where} must be a non-empty list whose first item is one of "
                         f"{names(EMBEDDING)}, e.g. {default_transform()}; got {spec!r}.")
    items = [_parse_item(item, f"{where}[{i}]") for i, item in enumerate(spec)]
    for i, item in enumerate(items):
        kind = FORMULAS[item.name].kind
        if i == 0 and kind != EMBEDDING:
            raise ValueError(f"{where}[0]: {item.name!r} is a scalar transform; the chain must "
                             f"start with one embedding formula ({', '.join(names(EMBEDDING))}).")
        if i > 0 and kind != SCALAR:
            raise ValueError(f"{where}[{i}]: {item.name!r} is an embedding formula; only the "
                             "first item may be one, later items must be scalar transforms "
                             f"({', '.join(names(SCALAR))}).")
    return items


def _parse_item(item: Any, where: str) -> TransformItem:
    if isinstance(item, TransformItem):  # already parsed: check again, cheaply
        item = {"name": item.name, **item.params}
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: expected a formula name or a mapping with a 'name' key, "
                         f"got {item!r}.")
    if "name" not in item:
        raise ValueError(f"{where}: missing 'name' (one of {', '.join(names())}); got {item!r}.")
    name = item["name"]
    if name not in FORMULAS:
        close = difflib.get_close_matches(str(name), names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{where}: unknown formula {name!r}{hint}; known: {', '.join(names())}.")
    info = FORMULAS[name]
    given = {str(k): v for k, v in item.items() if k != "name"}
    unknown = sorted(set(given) - set(info.params))
    if unknown:
        known = ", ".join(info.params) or "none"
        raise ValueError(f"{where} ({name}): unknown parameter {unknown[0]!r}; known: {known}.")
    params = {key: _parse_value(key, given.get(key, p.default), p, f"{where}.{key}", name)
              for key, p in info.params.items()}
    return TransformItem(name, params)


def _parse_value(key: str, value: Any, p: Param, where: str, name: str) -> float | None:
    if value is REQUIRED:
        raise ValueError(f"{where} is missing: {name} needs {key} ({p.rule}).")
    if value is None and p.nullable:
        return None
    # bool is an int subclass, but `alpha: true` is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}={value!r} must be {p.rule} ({name}).")
    if not p.ok(float(value)):
        raise ValueError(f"{where}={value!r} must be {p.rule} ({name}).")
    return float(value)
