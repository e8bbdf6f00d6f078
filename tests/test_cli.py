"""The command line answers help and config errors without loading the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import CONFIGS

HEAVY = ("torch", "lightning", "torchrl", "tensordict", "open_clip", "transformers")


def imported_modules(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``python -X importtime -m vlmrm ARGS``; return the result and every module it
    imported (importtime writes one line per module to stderr)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "vlmrm", *args],
                          capture_output=True, text=True, timeout=120)
    modules = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
               if line.startswith("import time:")}
    return done, modules


@pytest.mark.parametrize("args, code", [
    (["--help"], 0),
    (["fit", "--help"], 0),
    (["fit", "--config", str(CONFIGS / "cartpole.yaml"), "reward.alpha=2"], 2),
    (["fit", "--config", str(CONFIGS / "cartpole.yaml"), "agent.total_env_step=5"], 2),
    (["fit", "--config", str(CONFIGS / "cartpole.yaml"), "reward.transform=[softmx]"], 2),
    (["evaluate-reward", "--help"], 0),
    (["dataset", "--help"], 0),
    (["evaluate-reward", "--config", str(CONFIGS / "quickstart.yaml"), "--out", "unused",
      "--backends", "open_clip"], 2),
    (["dataset", "--config", str(CONFIGS / "quickstart.yaml"), "--out", "unused",
      "--episodes", "0"], 2),
], ids=["help", "fit-help", "bad-alpha", "unknown-key", "bad-transform", "evaluate-reward-help",
        "dataset-help", "bad-backend-spec", "bad-episodes"])
def test_help_and_config_errors_import_no_heavy_library(args, code):
    done, modules = imported_modules(*args)
    assert done.returncode == code, done.stderr[-2000:]
    assert "vlmrm.cli" in modules and len(modules) > 20  # the listing is real
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, f"`vlmrm {' '.join(args)}` imported {heavy[:10]}"


def test_fit_help_lists_every_config_key_with_its_help():
    from dataclasses import fields, is_dataclass

    from vlmrm.config import Config

    done = subprocess.run([sys.executable, "-m", "vlmrm", "fit", "--help"],
                          capture_output=True, text=True, check=True)
    for group in fields(Config):
        default = group.default_factory() if is_dataclass(group.default_factory) else None
        keys = [group.name] if default is None else [
            f"{group.name}.{f.name}" for f in fields(default)]
        for key in keys:
            assert f"  {key} = " in done.stdout, key
    assert "reward.alpha = 0.0  -- Goal-baseline regularization strength" in done.stdout
