"""The reward-formula registry and ``reward.transform`` specs, checked in pure Python (no
torch: config validation stays cheap).

A formula is registered once, with :func:`register_formula`: its name, kind, parameters
(each with its default and its rule), a one-line summary, and the ``torch.nn.Module`` that
computes it (a class, or ``"module:attr"`` imported only when a chain is built). The config
checks, ``vlmrm fit --help``, the documentation's formula table, ``evaluate-reward`` and
:func:`vlmrm.reward.formulas.build_reward_fn` all read that one entry.

A spec is an ordered list of items, each a formula name and its parameters (a bare string:
default parameters), e.g. ``[{"name": "goal_baseline", "alpha": 0.5}, "running_norm"]``: one
*embedding formula* first (a *judge formula* with a judge backend), then any number of
*scalar transforms*, then at most one ``mix``. :func:`parse_transform` checks names,
parameter names and ranges and fills in defaults.
"""

from __future__ import annotations

import difflib
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

EMBEDDING = "embedding"  # image (or window) embeddings [B, D] -> rewards [B]; first
JUDGE = "judge"  # a judge's answer log-probabilities [B, C] -> rewards [B]; first (judges)
SCALAR = "scalar"  # rewards [B] -> rewards [B]; any number, after the first item
MIX = "mix"  # the env's reward and info terms added to the VLM reward; at most one, last
KINDS = (EMBEDDING, SCALAR, MIX, JUDGE)
#: The formula kind that starts a chain, by backend kind (vlmrm.backends.base.KINDS).
FIRST_KIND = {"embedding": EMBEDDING, "video": EMBEDDING, "judge": JUDGE}

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
class WeightsParam(Param):
    """A mapping of names -> numbers (``mix``'s terms); ``ok`` checks each number, and
    ``key_rule``/``key_ok`` each name."""

    key_rule: str = "a name"
    key_ok: Callable[[str], bool] = bool


@dataclass(frozen=True)
class FormulaInfo:
    """A registered formula. ``build`` makes its module: ``build(prompts, **params)`` for an
    embedding formula (``prompts`` a :class:`vlmrm.reward.formulas.PromptEmbeddings`),
    ``build(**params)`` for a scalar transform."""

    name: str
    kind: str  # EMBEDDING or SCALAR
    params: Mapping[str, Param]
    summary: str
    build: str | Callable[..., Any] = field(repr=False)

    def factory(self) -> Callable[..., Any]:
        """``build``, importing it first when it is given as ``"module:attr"``."""
        if callable(self.build):
            return self.build
        module, _, attr = self.build.partition(":")
        return getattr(importlib.import_module(module), attr)

    def signature(self) -> str:
        """``name(param=default, ...)``, e.g. ``threshold(value=required, above=1, below=0)``."""
        shown = ", ".join(f"{k}={show_value(p.default)}" for k, p in self.params.items())
        return f"{self.name}({shown})"


@dataclass(frozen=True)
class TransformItem:
    """A checked spec item: a known name and all its parameters (defaults filled in)."""

    name: str
    params: dict[str, Any]  # numbers (or None); a WeightsParam's value is a dict


#: Every registered formula by name, in registration order.
FORMULAS: dict[str, FormulaInfo] = {}


def register_formula(name: str, kind: str, summary: str, build: str | Callable[..., Any],
                     params: Mapping[str, Param] | None = None) -> FormulaInfo:
    """Register a formula: after this one call, ``reward.transform`` accepts it, the config
    checks know its parameters, and ``vlmrm fit --help`` and ``evaluate-reward`` show it.

    ``build`` is the ``torch.nn.Module`` class (or any callable returning a module), or
    ``"package.module:Class"`` to import it only when a chain is built, which keeps config
    checks and ``--help`` free of torch. A name is registered once; registering it again
    raises ``ValueError``.
    """
    params = dict(params or {})
    problem = _registration_problem(name, kind, summary, build, params)
    if problem:
        raise ValueError(f"register_formula({name!r}): {problem}")
    info = FormulaInfo(name, kind, params, summary, build)
    FORMULAS[name] = info
    return info


def _registration_problem(name: Any, kind: Any, summary: Any, build: Any,
                          params: dict[str, Any]) -> str | None:
    if not isinstance(name, str) or not name.isidentifier():
        return "the name must be a Python identifier, e.g. 'my_formula'."
    if name in FORMULAS:
        return f"{name!r} is already registered ({FORMULAS[name].summary})."
    if kind not in KINDS:
        return f"kind={kind!r} must be one of {list(KINDS)}."
    if not isinstance(summary, str) or not summary.strip() or "\n" in summary:
        return "the summary must be one non-empty line (it is the formula's help text)."
    if not (callable(build) or (isinstance(build, str) and build.count(":") == 1)):
        return f"build={build!r} must be a callable or 'package.module:attr'."
    bad = [k for k, p in params.items()
           if not isinstance(p, Param) or not str(k).isidentifier() or k == "name"]
    if bad:
        return f"parameter {bad[0]!r} must be an identifier other than 'name', with a Param."
    return None


def _finite(v: float) -> bool:
    return math.isfinite(v)


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def show_value(value: Any) -> str:
    """A parameter value as help and docs print it: ``0.01``, ``null``, ``required``."""
    if value is REQUIRED:
        return "required"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {v:g}" for k, v in value.items()) + "}"
    return "null" if value is None else f"{value:g}"


register_formula(
    "goal_baseline", EMBEDDING,
    "1 - 1/2 ||(x - g) P||^2, the paper's goal-baseline projection (alpha=0: cosine)",
    "vlmrm.reward.formulas:GoalBaseline",
    {"alpha": Param(0.0, "in [0, 1]", lambda v: 0.0 <= v <= 1.0)})
register_formula(
    "softmax", EMBEDDING, "probability of the goal among goal, baseline and negative prompts",
    "vlmrm.reward.formulas:Softmax",
    # CLIP's trained logit scale is 100, i.e. temperature 0.01.
    {"temperature": Param(0.01, "a finite number > 0", _positive)})
register_formula(
    "contrastive", EMBEDDING, "goal similarity minus negative (else baseline) similarity",
    "vlmrm.reward.formulas:Contrastive")
register_formula(
    "threshold", SCALAR, "`above` where reward >= value, else `below` (a binary success reward)",
    "vlmrm.reward.formulas:Threshold",
    {"value": Param(REQUIRED, "a finite number", _finite),
     "above": Param(1.0, "a finite number", _finite),
     "below": Param(0.0, "a finite number", _finite)})
register_formula(
    "running_norm", SCALAR,
    "(reward - running mean) / sqrt(running var + eps), optionally clipped",
    "vlmrm.reward.formulas:RunningNorm",
    {"eps": Param(1e-8, "a finite number > 0", _positive),
     "clip": Param(None, "a finite number > 0 or null", _positive, nullable=True)})
#: Keys the env's TensorDict holds already: an info key of that name would clash.
RESERVED_TERMS = ("reward", "done", "terminated", "truncated", "observation", "pixels",
                  "action", "vlm_reward")


def _term_name_ok(name: str) -> bool:
    return bool(name) and not name.startswith("_") and name not in RESERVED_TERMS


register_formula(
    "mix", MIX,
    "reward + sum of weight * term; a term is gt_reward (the env's reward) or a numeric key of "
    "the env's info dict",
    "vlmrm.reward.mix:Mix",
    {"terms": WeightsParam(
        REQUIRED, "a non-empty mapping of term -> finite weight, e.g. {gt_reward: 0.1}",
        _finite, key_rule="gt_reward or an info key (not starting with _, not an env "
        "output such as reward or done)", key_ok=_term_name_ok)})

register_formula(
    "yes_no", JUDGE, "log P(Yes) - log P(No) for the judge's next token; default question "
    "'Does this image show {goal}? Answer yes or no.'", "vlmrm.reward.judge:YesNo")
register_formula(
    "progress", JUDGE, "expected digit 0-9 of the judge's next token (probabilities "
    "renormalised over the ten digits) / 9; default question 'How far along is {goal}, from "
    "0 to 9? Answer with one digit.'", "vlmrm.reward.judge:Progress")


def names(kind: str | None = None) -> list[str]:
    """Known formula names (of one kind, or all), sorted."""
    return sorted(n for n, info in FORMULAS.items() if kind is None or info.kind == kind)


def describe_formulas() -> str:
    """Every registered formula with its parameters, defaults and rules (for ``--help``)."""
    lines = []
    for kind, title in ((EMBEDDING, "embedding formulas (the first item)"),
                        (JUDGE, "judge formulas (the first item with a judge backend)"),
                        (SCALAR, "scalar transforms (any number after it)"),
                        (MIX, "state terms added to the VLM reward (the last item, at most one; "
                              "transforms before it act on the VLM part only)")):
        lines.append(f"  {title}:")
        for info in (i for i in FORMULAS.values() if i.kind == kind):
            rules = "; ".join(f"{k}: {p.rule}" for k, p in info.params.items())
            lines.append(f"    {info.signature()}  -- {info.summary}"
                         + (f"; {rules}" if rules else ""))
    return "\n".join(lines)


def default_transform(alpha: float = 0.0) -> list[dict[str, Any]]:
    """The paper's reward: the goal-baseline projection alone."""
    return [{"name": "goal_baseline", "alpha": alpha}]


def resolve_transform(alpha: float, transform: Sequence[Any] | None,
                      backend_kind: str | None = None) -> list[dict[str, Any]]:
    """The one chain that ``reward.alpha`` and ``reward.transform`` describe, checked, with
    every parameter filled in; ``ValueError`` names the bad key.

    ``reward.alpha`` is shorthand for ``[{name: goal_baseline, alpha: A}]``. Its default, 0,
    also means "not set", so that configs that spell it out still take any transform; a
    non-zero alpha with a transform must be that transform's goal_baseline alpha.
    ``backend_kind`` (``vlmrm.backends.base.KINDS``; None: not known without importing the
    backend) picks the default chain and must fit the chain's first formula: a judge backend
    takes a judge formula (null: ``[yes_no]``), the others an embedding formula.
    """
    if backend_kind == "judge":
        if alpha != 0.0:
            raise ValueError(f"reward.alpha={alpha} is goal_baseline's parameter, an embedding "
                             "formula; a judge backend does not embed. Drop reward.alpha (or "
                             "set it to 0).")
        transform = ["yes_no"] if transform is None else transform
    elif transform is None:
        return [{"name": "goal_baseline",
                 "alpha": check_param("goal_baseline", "alpha", alpha, "reward.alpha")}]
    items = parse_transform(transform)
    first = items[0]
    if alpha != 0.0 and not (first.name == "goal_baseline" and first.params["alpha"] == alpha):
        raise ValueError(
            f"reward.alpha={alpha} and reward.transform are both set and disagree: "
            f"reward.alpha is shorthand for a chain of goal_baseline(alpha={alpha}) alone, "
            f"but the transform starts with {_describe(first)}. Put alpha into the "
            f"goal_baseline item, e.g. reward.transform='[{{name: goal_baseline, alpha: "
            f"{alpha}}}]', and drop reward.alpha (or drop reward.transform).")
    _check_first_kind(items[0], backend_kind)
    return [{"name": item.name, **item.params} for item in items]


def _check_first_kind(first: TransformItem, backend_kind: str | None) -> None:
    want = FIRST_KIND.get(backend_kind or "")
    have = FORMULAS[first.name].kind
    if want is None or have == want:
        return
    raise ValueError(
        f"reward.transform starts with {first.name!r}, a{'n' if have == EMBEDDING else ''} "
        f"{have} formula, but the backend is of kind {backend_kind!r}, which needs "
        f"a{'n' if want == EMBEDDING else ''} {want} formula first ({', '.join(names(want))}).")


def _describe(item: TransformItem) -> str:
    return f"{item.name}({', '.join(f'{k}={show_value(v)}' for k, v in item.params.items())})"


def check_param(name: str, key: str, value: Any, where: str) -> float | None:
    """One parameter of a registered formula, checked by its rule (``where`` names it)."""
    return _parse_value(key, value, FORMULAS[name].params[key], where, name)


def parse_transform(spec: Sequence[Any], where: str = "reward.transform") -> list[TransformItem]:
    """Check a spec and fill in defaults; raise ``ValueError`` naming the bad item.

    ``where`` prefixes messages, e.g. ``reward.transform[1]: unknown formula 'softmx'``.
    """
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence) or len(spec) == 0:
        raise ValueError(f"{where} must be a non-empty list whose first item is one of "
                         f"{names(EMBEDDING)}, e.g. {default_transform()}; got {spec!r}.")
    items = [_parse_item(item, f"{where}[{i}]") for i, item in enumerate(spec)]
    for i, item in enumerate(_before_mix(items, where)):
        kind = FORMULAS[item.name].kind
        if i == 0 and kind not in (EMBEDDING, JUDGE):
            raise ValueError(f"{where}[0]: {item.name!r} is a scalar transform; the chain must "
                             f"start with one embedding formula ({', '.join(names(EMBEDDING))}) "
                             f"or, for a judge backend, one judge formula "
                             f"({', '.join(names(JUDGE))}).")
        if i > 0 and kind != SCALAR:
            raise ValueError(f"{where}[{i}]: {item.name!r} is a{'n' if kind == EMBEDDING else ''} "
                             f"{kind} formula; only the first item may be one, later items "
                             f"must be scalar transforms ({', '.join(names(SCALAR))}).")
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
    if isinstance(p, WeightsParam):
        return _parse_weights(value, p, where, name)
    if value is None and p.nullable:
        return None
    # bool is an int subclass, but `alpha: true` is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}={value!r} must be {p.rule} ({name}).")
    if not p.ok(float(value)):
        raise ValueError(f"{where}={value!r} must be {p.rule} ({name}).")
    return float(value)


def _parse_weights(value: Any, p: WeightsParam, where: str, name: str) -> dict[str, float]:
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{where}={value!r} must be {p.rule} ({name}).")
    out = {}
    for key, weight in value.items():
        if not isinstance(key, str) or not p.key_ok(key):
            raise ValueError(f"{where}: term {key!r} must be {p.key_rule} ({name}); for the "
                             "env's own reward write gt_reward.")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not p.ok(float(weight)):
            raise ValueError(f"{where}.{key}={weight!r} must be a finite number, the term's "
                             f"weight ({name}), e.g. {{{key}: 0.1}}.")
        out[key] = float(weight)
    return out


def _before_mix(items: list[TransformItem], where: str) -> list[TransformItem]:
    """``items`` without a last ``mix`` item; a ``mix`` anywhere else is refused."""
    at = [i for i, item in enumerate(items) if FORMULAS[item.name].kind == MIX]
    if not at:
        return items
    example = ("e.g. [goal_baseline, running_norm, {name: mix, terms: {gt_reward: 0.1}}]")
    if len(at) > 1:
        raise ValueError(f"{where}[{at[1]}]: a second {items[at[1]].name!r} item; the chain "
                         f"takes at most one, the last: put all terms into one, {example}.")
    if at[0] != len(items) - 1:
        raise ValueError(f"{where}[{at[0]}]: {items[at[0]].name!r} must be the last item (it "
                         "adds state terms to the finished VLM reward; transforms before it "
                         f"act on the VLM part only), {example}.")
    if at[0] == 0:
        raise ValueError(f"{where}[0]: {items[0].name!r} adds terms to a VLM reward, so the "
                         "chain must start with one embedding formula "
                         f"({', '.join(names(EMBEDDING))}) before it, {example}.")
    return items[:-1]


def _is_mix(item: Any) -> bool:
    name = item.name if isinstance(item, TransformItem) else (
        item if isinstance(item, str) else item.get("name"))
    return name in FORMULAS and FORMULAS[name].kind == MIX


def mix_terms(spec: Sequence[Any] | None) -> dict[str, float] | None:
    """The terms of a checked spec's ``mix`` item (``{name: weight}``), None without one."""
    for item in spec or ():
        if _is_mix(item):
            params = item.params if isinstance(item, TransformItem) else item
            return dict(params["terms"])
    return None


def without_mix(spec: Sequence[Any]) -> list[Any]:
    """A spec's VLM part: its items before ``mix`` (what scores frames alone)."""
    return [item for item in spec if not _is_mix(item)]
