"""The package imports only downward: no module imports one that (indirectly) imports it back.

Every ``import`` statement counts, wherever it is: at the top, inside functions, and under
``if TYPE_CHECKING``. A lazy import hides a cycle from Python, not from the layering.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


def module_files() -> dict[str, Path]:
    """Module name -> file, for ``vlmrm/`` and ``backends/`` (installed as vlmrm.backends)."""
    found = {}
    for top, package in ((ROOT / "vlmrm", "vlmrm"), (ROOT / "backends", "vlmrm.backends")):
        for path in top.rglob("*.py"):
            parts = list(path.relative_to(top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules that ``path`` imports, anywhere in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from a import b` imports module a.b when b is a module, else a.
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known
                     else node.module for alias in node.names]
        else:
            continue
        out.update(name for name in names if name in known)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imported_modules(path, known) - {name} for name, path in files.items()}


def test_no_import_cycles_anywhere_in_the_package():
    graph = import_graph()
    assert len(graph) > 30 and "vlmrm.backends.openclip_backend" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles_through_lazy_imports(tmp_path):
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from vlmrm.b import x\n")
    typed = tmp_path / "typed.py"
    typed.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import vlmrm.a\n")
    known = {"vlmrm.a", "vlmrm.b"}
    graph = {"vlmrm.a": imported_modules(lazy, known), "vlmrm.b": imported_modules(typed, known)}
    assert find_cycle(graph) == ["vlmrm.a", "vlmrm.b", "vlmrm.a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


#: The layers of docs/development.md's layout table, bottom first. A module may import its
#: own package and any lower layer, never a higher one or a sibling of its own layer.
LAYERS: list[tuple[str, ...]] = [
    ("vlmrm.keys", "vlmrm.errors", "vlmrm.fileio", "vlmrm.compiled", "vlmrm.seeds",
     "vlmrm.interrupt", "vlmrm.quiet", "vlmrm.precision", "vlmrm.config.schema"),
    ("vlmrm.media",),
    ("vlmrm.backends",),  # the contract plugins build on
    ("vlmrm.reward", "vlmrm.scenes",
     # Deprecated aliases of the contract's old paths (one release).
     "vlmrm.backend", "vlmrm.registry", "vlmrm.preprocess", "vlmrm.hub"),
    ("vlmrm.envs", "vlmrm.sac", "vlmrm.config", "vlmrm.evaluation", "vlmrm.demo"),
    ("vlmrm.collect",),
    ("vlmrm.run",),
    ("vlmrm.commands",),
    ("vlmrm.cli",),
    ("vlmrm.__main__", "vlmrm"),
]


def owner(module: str) -> tuple[int, str]:
    """(layer, unit) of a module: the longest listed name it is, or lies under."""
    best = None
    for level, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                    best is None or len(name) > len(best[1])):
                best = (level, name)
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best


def test_every_import_runs_down_a_layer_or_stays_in_its_package():
    graph = import_graph()
    for name, deps in graph.items():
        level, unit = owner(name)
        for dep in deps:
            dep_level, dep_unit = owner(dep)
            assert dep_unit == unit or dep_level < level, (
                f"{name} (layer {level}) imports {dep} (layer {dep_level})")


def test_the_layer_check_catches_an_upward_import():
    assert owner("vlmrm.config.schema") == (0, "vlmrm.config.schema")
    assert owner("vlmrm.config.checks")[0] > owner("vlmrm.reward.spec")[0]
    assert owner("vlmrm.backends.base")[0] < owner("vlmrm.config.load")[0]
    assert owner("vlmrm.collect.loop")[0] < owner("vlmrm.run.module")[0]


def test_the_backend_contract_and_the_schema_agree_on_precisions():
    from vlmrm.backends.base import DTYPES
    from vlmrm.config.schema import PRECISIONS

    assert tuple(DTYPES) == PRECISIONS


def test_the_cli_s_argument_checks_stay_torch_free():
    """The CLI checks evaluate-reward / dataset arguments with these before loading torch."""
    code = ("import sys, vlmrm.evaluation.options, vlmrm.evaluation.frameset, "
            "vlmrm.backends.registry; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("old, new", [("backend", "base"), ("registry", "registry"),
                                      ("preprocess", "preprocess"), ("hub", "hub")])
def test_the_contract_s_old_paths_still_work_with_a_warning(old, new):
    code = (f"import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            f"try:\n    import vlmrm.{old}\nexcept DeprecationWarning as w:\n    print(w)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert f"vlmrm.{old} moved to vlmrm.backends.{new}" in out.stdout
    with pytest.warns(DeprecationWarning):
        old_module = importlib.reload(importlib.import_module(f"vlmrm.{old}"))
    new_module = importlib.import_module(f"vlmrm.backends.{new}")
    public = [n for n in vars(new_module) if not n.startswith("_")]
    assert public and all(getattr(old_module, n) is getattr(new_module, n) for n in public)


def test_no_folder_holds_more_than_a_quarter_of_the_code():
    lines: dict[str, int] = {}
    for path in module_files().values():
        folder = str(path.parent.relative_to(ROOT))
        lines[folder] = lines.get(folder, 0) + len(path.read_text().splitlines())
    total = sum(lines.values())
    assert total > 5000 and len(lines) >= 10
    biggest = max(lines, key=lines.get)
    assert lines[biggest] <= 0.25 * total, f"{biggest}: {lines[biggest]} of {total} lines"
