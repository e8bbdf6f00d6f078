"""The documentation site builds with ``mkdocs build --strict`` (broken links and anchors
fail), its configuration reference lists every schema key, and what the pages show can
still run: every ``vlmrm`` command parses with the real CLI parser, every config key and
repository path they name exists."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from vlmrm.cli import build_parser
from vlmrm.config.load import schema_keys

PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
SNIPPETS = sorted((ROOT / "docs" / "snippets").glob("*"))
GROUPS = ("env", "reward", "agent", "trainer", "logging")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    import importlib.util

    # Not a skip: CI installs the dev extra, which includes mkdocs, and must build the site.
    assert importlib.util.find_spec("mkdocs"), 'mkdocs is missing: pip install -e ".[docs]"'
    out = tmp_path_factory.mktemp("site")
    before = sorted(p.name for p in ROOT.iterdir())
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        # No --quiet: it drops the warnings before --strict counts them.
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in ROOT.iterdir()) == before  # nothing written into the repo
    return out


def test_site_builds_strict(site):
    for page in ("index", "getting-started/index", "configuration/index", "scaling/index"):
        assert (site / f"{page}.html").is_file(), page


def test_configuration_reference_lists_every_schema_key(site):
    html = (site / "configuration" / "index.html").read_text()
    missing = [k for k in schema_keys() if f"<code>{k}</code>" not in html]
    assert not missing, f"keys missing from the generated reference: {missing}"
    assert "config-reference" not in html  # the marker was replaced


def test_the_formula_table_lists_every_registered_formula(site):
    from vlmrm.reward.spec import FORMULAS, JUDGE, MIX, SCALAR

    html = (site / "reward-models" / "index.html").read_text()
    assert "formula-reference" not in html  # the marker was replaced
    for name, info in FORMULAS.items():
        kind = {SCALAR: "scalar transform", MIX: "state terms", JUDGE: "judge formula"}.get(
            info.kind, "embedding formula")
        assert re.search(rf"<td><code>{name}</code></td>\s*<td>{kind}</td>", html), name


def test_the_reference_hook_reads_the_schema_of_this_checkout(tmp_path):
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        import config_reference as hook
    finally:
        sys.path.pop(0)
    schema = tmp_path / "schema.py"
    schema.write_text((ROOT / "vlmrm" / "config" / "schema.py").read_text() + (
        "\n\n@dataclass\nclass Extra:\n    depth_key: int = opt(7, 'A | pipe <tag> *x*.')\n\n"
        "@dataclass\nclass Middle:\n    inner: Extra = group(Extra, 'Nested.')\n\n"
        "@dataclass\nclass Outer:\n    mid: Middle = group(Middle, 'Group.')\n"))
    text = hook.group_tables(hook.load_schema(schema).Outer)
    assert "## `mid`" in text and "### `mid.inner`" in text  # groups at any depth
    assert r"| `mid.inner.depth_key` | `int` | `7` | A \| pipe &lt;tag&gt; \*x\*. |" in text


def code_blocks(text: str) -> list[str]:
    """The shell blocks of a Markdown page (fenced ``bash``/``sh``, or untagged)."""
    blocks, lines, lang = [], [], None
    for line in text.splitlines():
        if line.startswith("```") and lang is None:
            lang, lines = line[3:].strip(), []
        elif line.startswith("```"):
            if lang in ("bash", "sh", ""):
                blocks.append("\n".join(lines) + "\n")
            lang = None
        elif lang is not None:
            lines.append(line)
    return blocks


def commands(program: str = "vlmrm") -> list[tuple[str, list[str]]]:
    """``(file, words)`` for every ``program`` command in the pages' shell blocks and the
    included snippets, continuation lines joined and comments dropped."""
    sources = [(p, block) for p in PAGES for block in code_blocks(p.read_text())]
    sources += [(p, p.read_text()) for p in SNIPPETS if p.suffix == ".sh"]
    found = []
    for path, block in sources:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if program in words:
                found.append((path.name, words[words.index(program):]))
    return found


def check_args(name: str, words: list[str], args) -> None:
    keys = set(schema_keys())
    for item in getattr(args, "overrides", None) or []:
        assert item.split("=", 1)[0] in keys, (name, words)
    config = getattr(args, "config", None)
    assert config is None or (ROOT / config).is_file(), (name, config)


def test_every_command_on_the_pages_parses():
    found = commands()
    assert len(found) >= 20
    parser, _ = build_parser()
    for name, words in found:
        if "--help" in words:
            continue
        cut = next((i for i, w in enumerate(words) if w in ("||", "&&", ";")), len(words))
        check_args(name, words, parser.parse_args(words[1:cut]))


def test_every_throughput_benchmark_command_on_the_pages_parses():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_throughput",
                                                  ROOT / "benchmarks" / "throughput.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses resolve annotations through it
    try:
        spec.loader.exec_module(bench)
    finally:
        del sys.modules[spec.name]
    found = [(n, w) for n, w in commands("python") if w[1:2] == ["benchmarks/throughput.py"]]
    assert len(found) >= 3
    for name, words in found:
        check_args(name, words, bench.parse_args(words[2:]))


def mentions(pattern: str) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for span in re.findall(r"`([^`\n]+)`", page.read_text()):
            found += [(page.name, m) for m in re.findall(pattern, span)]
    return found


def test_every_config_key_the_pages_name_exists():
    keys = set(schema_keys())
    named = mentions(rf"^((?:{'|'.join(GROUPS)})\.[a-z_]+)")
    assert len(named) > 100
    assert not [m for m in named if m[1] not in keys]


def test_every_repository_path_the_pages_name_exists():
    paths = mentions(r"^((?:tests|vlmrm|benchmarks|configs|backends|docs)/[\w./-]+\.\w+)")
    assert len(paths) > 20
    assert not [m for m in paths if not (ROOT / m[1]).exists()]


def test_the_own_env_example_builds_and_renders_as_training_does():
    """docs/snippets/own_env.py, included in docs/envs-and-scenes.md: its env registers,
    its config is valid, and vlmrm's env factory steps it and renders its frames."""
    import importlib.util

    from vlmrm.envs.factory import make_base_env

    spec = importlib.util.spec_from_file_location("own_env_example",
                                                  ROOT / "docs" / "snippets" / "own_env.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    cfg = example.config(["reward.model=vlmrm-demo"])
    env = make_base_env(cfg.env, (64, 64), from_pixels=True, seed=0)
    try:
        rollout = env.rollout(5)
    finally:
        env.close()
    pixels = rollout["next", "pixels"]
    assert pixels.shape == (5, 128, 128, 3) and str(pixels.dtype) == "torch.uint8"
    assert len({bytes(frame.numpy()) for frame in pixels}) > 1  # the dot moves
