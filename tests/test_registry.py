"""The backend registry and `vlmrm backends`: built-ins plus entry-point plugins."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from tests.helpers import BACKENDS as ALL
from vlmrm.backends import registry
from vlmrm.cli import main
from vlmrm.errors import ConfigError


def test_backends_lists_all_four_with_their_origin(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    for name in ALL:
        assert f"\n{name} " in f"\n{out}"
    assert "built-in" in out and "vlmrm-toy-backend" in out  # where each one came from
    assert out.count("model names:") == len(ALL)


def test_unknown_backend_exits_2_listing_known_ones(capsys):
    assert main(["backends", "--check", "clipp", "whatever"]) == 2
    err = capsys.readouterr().err
    assert "'clipp' is not a known backend" in err
    for name in (*ALL, "ground_truth"):
        assert name in err


def test_name_collision_is_an_error(monkeypatch, capsys):
    real = registry.entry_points

    def with_duplicate(group):
        return [*real(group=group), EntryPoint("siglip", "elsewhere:Other", group)]

    monkeypatch.setattr(registry, "entry_points", with_duplicate)
    with pytest.raises(ConfigError, match="'siglip' .* already taken by built-in"):
        registry.available_backends()
    assert main(["backends"]) == 2
    assert "already taken" in capsys.readouterr().err


def test_importing_the_registry_and_backend_classes_imports_no_model_library():
    code = ("import sys, vlmrm.backends.registry as r\n"
            "[e.load() for e in r.available_backends().values()]\n"
            "print(sorted(m for m in ('transformers', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"




def test_backends_lists_each_backend_with_its_kind(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    for name, kind in (("open_clip", "embedding"), ("hf_clip", "embedding"),
                       ("siglip", "embedding"), ("xclip", "video"), ("hf_judge", "judge")):
        assert f"\n{name:<14} kind {kind} " in f"\n{out}", name


def test_check_describes_a_video_model_by_its_frames(tmp_path, capsys):
    from tests.backends.fixtures import XCLIP_FRAMES, build_xclip

    build_xclip(tmp_path)
    assert main(["backends", "--check", "xclip", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(kind video)" in out and "embedding dim 16" in out and "input 32x32" in out
    assert f"{XCLIP_FRAMES} frames per video" in out


def test_check_describes_a_judge_without_an_embedding(tmp_path, capsys):
    from tests.backends.fixtures import build_judge

    build_judge(tmp_path)
    assert main(["backends", "--check", "hf_judge", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(kind judge)" in out and "embedding dim" not in out and "M parameters" in out
