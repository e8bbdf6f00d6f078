"""Quiet runs: the quick start prints vlmrm's lines and Lightning's progress bar, and no
Python warning or root-logger line; the filters behind that drop only the messages they
name, in this process and in the processes it spawns."""

from __future__ import annotations

import logging
import multiprocessing
import re
import subprocess
import sys
import warnings

import pytest

from tests.helpers import CONFIGS, ROOT
from vlmrm.quiet import ROOT_MESSAGES, WARNINGS, quiet_third_party

#: What warnings.showwarning writes ("file.py:12: UserWarning: message") and what the
#: logging module's default format writes for the root logger ("WARNING:root:message").
WARNING_LINE = re.compile(r"\b\w*Warning: ")
ROOT_LOGGER_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):root:", re.MULTILINE)
TORCHRL_WARNING = WARNINGS[0][0] + ", but target parameters have been found."


@pytest.mark.slow  # end to end, minutes of the fast suite's budget; CI runs it
def test_the_quick_start_prints_no_warning_and_no_root_logger_line(tmp_path):
    """The quick start's command as the README gives it, shortened, as a user runs it: the
    default collector (a process of its own), the progress bar, an evaluation."""
    cmd = [sys.executable, "-m", "vlmrm", "fit", "--config", str(CONFIGS / "quickstart.yaml"),
           "agent.total_env_steps=200", "agent.learning_starts=100", "agent.eval_every=100",
           "agent.eval_episodes=1", f"logging.output_dir={tmp_path}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    for stream in (done.stderr, done.stdout):
        assert not WARNING_LINE.search(stream), stream
        assert not ROOT_LOGGER_LINE.search(stream), stream
    assert "Total FLOPs" not in done.stdout and "Trainable params" not in done.stdout
    assert "GPU available" not in done.stderr + done.stdout
    assert "vlmrm: reward.precision=auto chose" in done.stdout
    assert "vlmrm: run finished after 200 env steps" in done.stdout


def _emit_in_child(queue) -> None:
    """In a spawned child: which of two UserWarnings still show."""
    shown = []
    warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
    warnings.warn(TORCHRL_WARNING, UserWarning, stacklevel=1)
    warnings.warn("a warning about the user's run", UserWarning, stacklevel=1)
    queue.put(shown)


def test_spawned_processes_drop_the_same_warnings_and_no_others():
    quiet_third_party()
    ctx = multiprocessing.get_context("spawn")  # how env workers and the collector start
    queue = ctx.Queue()
    child = ctx.Process(target=_emit_in_child, args=(queue,))
    child.start()
    shown = queue.get(timeout=120)
    child.join(60)
    assert shown == ["a warning about the user's run"]


def test_filters_are_narrow(caplog):
    quiet_third_party()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # what the run's own filters would have shown
        quiet_third_party()
        warnings.warn(TORCHRL_WARNING, UserWarning, stacklevel=1)
        warnings.warn(TORCHRL_WARNING, DeprecationWarning, stacklevel=1)  # other category
        warnings.warn("No target network updater: something else", UserWarning, stacklevel=1)
    assert [type(w.message) for w in caught] == [DeprecationWarning, UserWarning]

    root = logging.getLogger()
    with caplog.at_level(logging.INFO):
        root.warning(ROOT_MESSAGES[0] + " 'ViT-B-32'. Model initialized randomly.")
        root.warning("something else on the root logger")
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info(
            "TPU available: False, using: 0 TPU cores")
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("LOCAL_RANK: 0")
    assert [r.getMessage() for r in caplog.records] == ["something else on the root logger",
                                                        "LOCAL_RANK: 0"]
