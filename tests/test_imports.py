"""The package imports only downward: no module imports one that (indirectly) imports it back.

Every ``import`` statement counts, wherever it is: at the top, inside functions, and under
``if TYPE_CHECKING``. A lazy import hides a cycle from Python, not from the layering.
"""

from __future__ import annotations

import ast
from pathlib import Path

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


def test_low_layers_do_not_import_the_layers_above_them():
    """The floors of the layout table in docs/development.md, checked: each may import only
    downward."""
    graph = import_graph()
    forbidden = {
        "vlmrm.keys": ("vlmrm.",),
        "vlmrm.errors": ("vlmrm.",),
        "vlmrm.fileio": ("vlmrm.",),
        "vlmrm.compiled": ("vlmrm.",),
        "vlmrm.registry": ("vlmrm.config", "vlmrm.build", "vlmrm.rl", "vlmrm.reward"),
        "vlmrm.media": ("vlmrm.rl", "vlmrm.reward", "vlmrm.build", "vlmrm.backend"),
        "vlmrm.config.schema": ("vlmrm.",),
        # Torch-free: the CLI checks evaluate-reward / dataset arguments with them.
        "vlmrm.evaluation.options": ("vlmrm.build", "vlmrm.rl", "vlmrm.reward", "vlmrm.backend"),
        "vlmrm.evaluation.frameset": ("vlmrm.build", "vlmrm.rl", "vlmrm.reward",
                                      "vlmrm.backend"),
    }
    for module, prefixes in forbidden.items():
        bad = sorted(m for m in graph[module] if m.startswith(prefixes))
        assert not bad, f"{module} imports {bad}"
    for name, deps in graph.items():
        if name.startswith(("vlmrm.reward", "vlmrm.rl", "vlmrm.backend", "vlmrm.scenes")):
            assert not {"vlmrm.build", "vlmrm.train", "vlmrm.cli"} & deps, name
            assert not any(d.startswith("vlmrm.evaluation") for d in deps), name
