"""MkDocs hook: the configuration reference and the formula table, generated at every build.

A page that holds ``MARKER`` gets, in its place, one table per config group with every key,
its default and its help text, read from the dataclasses of ``vlmrm/config/schema.py``; a
page that holds ``FORMULA_MARKER`` gets the table of reward formulas registered in
``vlmrm/reward/spec.py``. The references are therefore the code itself and cannot drift from
it. Both modules are loaded from this checkout by path (they import nothing of vlmrm, only
the standard library), so the build needs neither torch nor an installed vlmrm.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from types import ModuleType

MARKER = "<!-- config-reference -->"
FORMULA_MARKER = "<!-- formula-reference -->"
SCHEMA = Path(__file__).resolve().parents[2] / "vlmrm" / "config" / "schema.py"
FORMULA_SPEC = Path(__file__).resolve().parents[2] / "vlmrm" / "reward" / "spec.py"


def load_schema(path: Path = SCHEMA, name: str = "_vlmrm_docs_schema") -> ModuleType:
    # A private module name: the build must not shadow or reuse an imported vlmrm.
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve string annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def default_of(f) -> object:
    if f.default is not MISSING:
        return f.default
    return f.default_factory()


def show_default(value: object) -> str:
    """A default as it would be written in YAML."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return "`" + text + "`"


def escape(text: str) -> str:
    """Help text as Markdown table-cell text: code spans kept, markup characters escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        part = parts[i].replace("\\", "\\\\")
        for ch in "|*_[]":
            part = part.replace(ch, "\\" + ch)
        parts[i] = part.replace("<", "&lt;").replace(">", "&gt;")
    return "".join(parts)


def group_tables(cls: type, prefix: str = "", level: int = 2) -> str:
    """The plain keys of ``cls`` as one table, then a section per group (at any depth)."""
    plain = [f for f in fields(cls) if not is_dataclass(default_of(f))]
    groups = [f for f in fields(cls) if is_dataclass(default_of(f))]
    out = ["#" * level + " Top-level keys", ""] if plain and not prefix else []
    if plain:
        out += table(plain, prefix)
    for g in groups:
        out += ["#" * level + f" `{prefix}{g.name}`", "", escape(g.metadata["help"]), "",
                group_tables(type(default_of(g)), f"{prefix}{g.name}.", level + 1)]
    return "\n".join(out)


def table(plain_fields, prefix: str) -> list[str]:
    rows = ["| key | type | default | what it does |", "|---|---|---|---|"]
    for f in plain_fields:
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        kind = kind.replace(" | None", " or null")
        rows.append(f"| `{prefix}{f.name}` | `{kind}` | {show_default(default_of(f))} | "
                    f"{escape(f.metadata['help'])} |")
    return rows + [""]


def formula_table(spec: ModuleType) -> str:
    """The formulas registered in ``spec`` (``vlmrm.reward.spec``): embedding formulas, judge
    formulas, scalar transforms, then the rest (state terms)."""
    rows = ["| name | kind | parameters (default): rule | reward |", "|---|---|---|---|"]
    order = [spec.EMBEDDING, getattr(spec, "JUDGE", spec.EMBEDDING), spec.SCALAR,
             getattr(spec, "MIX", spec.SCALAR)]
    for info in sorted(spec.FORMULAS.values(), key=lambda i: order.index(i.kind)):
        params = "<br>".join(f"`{k}` (`{spec.show_value(p.default)}`): {escape(p.rule)}"
                             for k, p in info.params.items()) or "none"
        kind = {spec.SCALAR: "scalar transform", getattr(spec, "MIX", None): "state terms"
                }.get(info.kind, f"{info.kind} formula")
        rows.append(f"| `{info.name}` | {kind} | {params} | {escape(info.summary)} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, group_tables(load_schema().Config))
    if FORMULA_MARKER in markdown:
        spec = load_schema(FORMULA_SPEC, "_vlmrm_docs_formulas")
        markdown = markdown.replace(FORMULA_MARKER, formula_table(spec))
    return markdown
