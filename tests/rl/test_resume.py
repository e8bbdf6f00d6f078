"""Exact resume: a run stopped by SIGTERM and resumed equals the run that never stopped
(step counter, replay buffer, every parameter and optimizer state, and the TensorBoard
curves, which continue in the same run directory)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import lightning as L
import pytest
import torch

from tests.helpers import CONFIGS, QUIET, scalars
from vlmrm.commands.fit import fit
from vlmrm.config import load_config
from vlmrm.errors import ConfigError
from vlmrm.interrupt import EXIT_INTERRUPTED, StopRequest
from vlmrm.run.resume import SAFE_TO_CHANGE, check_changes, plan_resume

SHORT = ("agent.total_env_steps=2000", "agent.learning_starts=200", "agent.eval_every=500",
         "agent.eval_episodes=1", "logging.checkpoint_every=100000", *QUIET)
#: The stop-and-resume runs: 4 episodes of 200 steps, updates from step 200 on, stopped at
#: step 400 (between the evaluations at 300 and 600) and resumed to the end; batches of 64
#: keep the updates cheap (what is compared does not depend on their size).
TOTAL, STOP_AT = 800, 400
RESUMED = ("agent.total_env_steps=800", "agent.learning_starts=200", "agent.eval_every=300",
           "agent.batch_size=64", "agent.eval_episodes=1", "logging.checkpoint_every=100000",
           *QUIET)


class SigtermAt(L.Callback):
    """Sends this process SIGTERM once the run has ``at`` env steps (a cluster's
    pre-emption, as the run sees it)."""

    def __init__(self, at: int) -> None:
        self.at, self.sent = at, False

    def on_train_batch_end(self, trainer, module, *args) -> None:
        if module.env_steps >= self.at and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


class StopAt(L.Callback):
    """Stops training the way any Lightning callback may (``trainer.should_stop``), here
    while a batch is being collected ahead: ``last.ckpt`` then holds it as pending."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, module, *args) -> None:
        if module.env_steps >= self.at:
            assert module.data.batches_in_flight()
            trainer.should_stop = True


class FinalState(L.Callback):
    """Everything the two runs must agree on, taken as training ends."""

    def on_train_end(self, trainer, module) -> None:
        self.env_steps = module.env_steps
        self.params = {k: v.clone() for k, v in module.loss_module.state_dict().items()}
        optimizer = trainer.optimizers[0].state_dict()["state"]
        self.optimizer = {(i, k): v.clone() for i, s in optimizer.items() for k, v in s.items()}
        self.replay = module.data.replay_buffer[:].clone()

    def assert_equals(self, other: FinalState) -> None:
        """Replay contents, parameters and optimizer state equal bit for bit."""
        keys = set(other.replay.keys(True, True))
        assert set(self.replay.keys(True, True)) == keys
        for key in keys:
            assert torch.equal(self.replay[key], other.replay[key]), key
        for name, value in other.params.items():
            assert torch.equal(self.params[name], value), name
        assert other.optimizer.keys() == self.optimizer.keys()
        for key, value in other.optimizer.items():
            assert torch.equal(self.optimizer[key], value), key


def _run(config: str, overrides: list[str], name: str, callbacks) -> object:
    return fit(load_config(CONFIGS / config, [*overrides, f"logging.run_name={name}"]),
               callbacks=callbacks)


@pytest.mark.parametrize("config,extra,stop", [
    # VLM reward, discrete actions, overlapped collection in a process of its own, frames
    # scored in passes of 2 steps while the batch is collected.
    ("quickstart.yaml", ["reward.stream_frames=2", "agent.collector=process"], "sigterm"),
    # Continuous actions with OU noise, 2 envs, sequential collection.
    pytest.param("mountaincar.yaml", ["reward.backend=ground_truth", "agent.overlap=false",
                                      "env.num_envs=2", "agent.train_freq=4"], "sigterm",
                 marks=pytest.mark.slow),
    # Stopped by another callback with a batch in flight: last.ckpt holds it. Collected on
    # a thread of the training process (the tests' QUIET setting).
    pytest.param("quickstart.yaml", [], "should_stop", marks=pytest.mark.slow),
], ids=["quickstart-streamed-process", "mountaincar-2envs-sequential",
        "quickstart-thread-pending-batch"])
def test_stop_then_resume_equals_the_straight_run(config, extra, stop, tmp_path):
    overrides = [*RESUMED, *extra, f"logging.output_dir={tmp_path}"]
    straight = FinalState()
    _run(config, overrides, "straight", [straight])
    stopper = SigtermAt(STOP_AT) if stop == "sigterm" else StopAt(STOP_AT)
    stopped = _run(config, overrides, "split", [stopper])
    assert STOP_AT <= stopped.env_steps < TOTAL
    if stop == "sigterm":
        assert stopped.interrupted and "vlmrm fit --resume" in stopped.report()

    resumed = FinalState()
    result = fit(None, resume=plan_resume(str(stopped.run_dir), None, []), callbacks=[resumed])
    assert result.run_dir == stopped.run_dir and not result.interrupted
    assert resumed.env_steps == straight.env_steps == TOTAL
    resumed.assert_equals(straight)

    # One run directory, one continuous curve: the same points as the straight run's.
    ours, theirs = scalars(stopped.run_dir), scalars(tmp_path / "straight")
    for tag in ("loss/critic", "train/episode_gt_return", "eval/gt_return"):
        steps = [s for s, _ in ours[tag]]
        assert steps == sorted(set(steps)), f"{tag}: steps repeat or go back"
        assert ours[tag] == theirs[tag], tag


def test_resume_refuses_a_changed_config_and_allows_a_longer_run(tmp_path):
    saved = load_config(CONFIGS / "quickstart.yaml")
    longer = load_config(CONFIGS / "quickstart.yaml", ["agent.total_env_steps=99999",
                                                       "logging.checkpoint_every=5"])
    check_changes(saved, longer)  # only safe keys differ
    for bad in ("agent.learning_rate=0.001", "reward.alpha=0.5", "env.num_envs=2", "seed=3"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            check_changes(saved, load_config(CONFIGS / "quickstart.yaml", [bad]))
    assert "agent.total_env_steps" in SAFE_TO_CHANGE and "agent.learning_rate" not in SAFE_TO_CHANGE


def test_stop_request_counts_signals_as_they_arrive_and_a_second_one_exits(monkeypatch):
    """Signals are counted on a thread of their own (a DDP rank's main thread may be stuck in
    a collective): the first halts the work and is forwarded, the same one again at once is
    not counted, a second a second later forwards, arms the watchdog and interrupts the main
    thread."""
    forwarded, halted, watchdogs = [], [], []
    monkeypatch.setattr(StopRequest, "_watchdog", lambda self: watchdogs.append(self))
    request = StopRequest(forward=forwarded.append)
    request.on_request = lambda: halted.append(True)
    request.install()
    try:
        assert signal.getsignal(signal.SIGTERM) == request._handle
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_until(lambda: forwarded)
        assert request.requested and request.signal == signal.SIGTERM and forwarded == [15]
        assert halted == [True]  # the work in flight is cut short at once
        # The same signal again at once (sent to every process, and forwarded): one request.
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        assert forwarded == [15] and not request.exiting
        request._first_at -= 1.0  # a second signal a second later exits
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            _wait_until(lambda: False)
        assert request.exiting and forwarded == [15, 15] and len(watchdogs) == 1
        os.kill(os.getpid(), signal.SIGINT)  # a third: already on the way out
        time.sleep(0.2)
        assert forwarded == [15, 15] and len(watchdogs) == 1
    finally:
        request.uninstall()
    assert signal.getsignal(signal.SIGTERM) != request._handle
    assert signal.set_wakeup_fd(-1) == -1  # the wakeup fd is given back too


def _wait_until(done, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.slow
def test_cli_sigterm_exits_interrupted_and_resume_last_finishes_the_run(tmp_path):
    """The command line as a cluster job sees it: SIGTERM from outside, exit code 130 and
    the resume command; then `vlmrm fit --resume last` continues to the end."""
    args = ["--config", str(CONFIGS / "quickstart.yaml"), *SHORT, "agent.eval_every=0",
            f"logging.output_dir={tmp_path}"]
    proc = subprocess.Popen([sys.executable, "-m", "vlmrm", "fit", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path
    # Wait until training runs (its TensorBoard file exists), then pre-empt it.
    while proc.poll() is None and not list(runs.glob("quickstart-*/events.out.tfevents.*")):
        pass
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_INTERRUPTED, err[-2000:]
    assert "SIGTERM received" in err and "vlmrm fit --resume" in out

    bad = subprocess.run([sys.executable, "-m", "vlmrm", "fit", "--resume", "last", *args,
                          "agent.gamma=0.5"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "agent.gamma" in bad.stderr
    done = subprocess.run([sys.executable, "-m", "vlmrm", "fit", "--resume", "last", *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "run finished after 2000 env steps" in done.stdout
    assert len(list(runs.glob("quickstart-*"))) == 1  # the same run directory
