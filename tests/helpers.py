"""Test helpers: paths, running `vlmrm fit` as users do, and reading a run's TensorBoard events."""

from __future__ import annotations

import multiprocessing
import sys
from multiprocessing.context import ForkServerContext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
#: Every backend installed for the tests: the built-ins and the test plugin (tests/plugin_pkg).
BACKENDS = ("open_clip", "hf_clip", "siglip", "xclip", "toy", "hf_judge")
#: No progress bar, CPU only, collection on a thread of the training process: what every
#: test run of `vlmrm fit` adds. The default collector, a process of its own, costs a few
#: seconds of start-up per run; its own tests (tests/rl/test_collect_process.py, the
#: determinism, resume and DDP tests, the learning tests) select it.
QUIET = ("trainer.enable_progress_bar=false", "trainer.accelerator=cpu",
         "agent.collector=thread")


def fit_run(tmp_path: Path, config: str, *overrides: str, name: str = "test") -> Path:
    """``vlmrm fit --config configs/<config>`` into ``tmp_path``; returns the run directory."""
    from vlmrm.cli import main

    out = tmp_path / "runs"
    code = main(["fit", "--config", str(CONFIGS / config), f"logging.output_dir={out}",
                 f"logging.run_name={name}", *QUIET, *overrides])
    assert code == 0
    return out / name


def cli_exit(argv: list[str]) -> None:
    """Run the `vlmrm` command line in this process and exit with its code (a process
    target: ``vlmrm.cli.main`` itself returns the code instead of exiting)."""
    from vlmrm.cli import main

    sys.exit(main(argv))


def preloaded_processes() -> ForkServerContext:
    """Processes forked from a server that imported vlmrm's CLI and training stack once.

    They start within milliseconds (a fresh `python -m vlmrm` spends ~6 s of CPU importing
    torch, Lightning and TorchRL) and are real, separate processes: they can be killed or
    run concurrently. The server lives until the test session ends.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["vlmrm.cli", "vlmrm.commands.fit", "tests.helpers"])
    return ctx


def events(run_dir: Path, kind: str = "scalars") -> dict[str, list]:
    """Every ``kind`` ("scalars" or "images") event of the run, by tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list] = {}
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={kind: 0})
        acc.Reload()
        read = acc.Scalars if kind == "scalars" else acc.Images
        for tag in acc.Tags()[kind]:
            out.setdefault(tag, []).extend(read(tag))
    return out


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the run -> [(step, value), ...]."""
    return {tag: [(e.step, e.value) for e in found] for tag, found in events(run_dir).items()}
