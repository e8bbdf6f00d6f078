"""Graceful interrupts: SIGINT or SIGTERM (a cluster's pre-emption) asks the run to stop.

The handler records the request and calls ``on_request`` (the data pipeline's halt): the
collection and scoring in flight stop at the next env step or encoder pass, and what they
did is kept as a partial batch. Training checks the request once per iteration, where every
DDP rank agrees to stop at the same iteration; the run then finishes the updates in
progress, writes ``last.ckpt`` with the replay buffer, the partial batch and everything else
a resume needs, and exits with :data:`EXIT_INTERRUPTED`. So the stop takes one env step, one
encoder pass or one update phase, not an iteration (``logging.stop_timeout_s``).

A second SIGINT or SIGTERM exits now (KeyboardInterrupt, which closes the collector and env
workers); a watchdog ends the process :data:`EXIT_GRACE_S` seconds later whatever it waits
for, killing the child processes still alive (env workers that take longer to close, for
one: each one's interpreter teardown takes seconds on a loaded machine).
"""

from __future__ import annotations

import _thread
import multiprocessing
import multiprocessing.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

#: Exit code of a run stopped by SIGINT/SIGTERM after writing its checkpoint (resumable).
EXIT_INTERRUPTED = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: A signal this soon after the first counts as the same one: a terminal's Ctrl-C or a
#: cluster's SIGTERM reaches every process of a DDP run, which also forwards it.
SAME_SIGNAL_S = 0.5
#: Seconds from a second signal to the process's end, whatever it still waits for.
EXIT_GRACE_S = 3.0
#: The same for a DDP worker rank, which must be gone before rank 0 stops waiting for it.
WORKER_GRACE_S = 1.5


class StopRequest:
    """Installs SIGINT/SIGTERM handlers (main thread only) that record a stop request.

    Signals are read on a thread of their own (``signal.set_wakeup_fd``), not in the Python
    handler: that one runs only when the main thread comes back to the interpreter, and a
    DDP rank's main thread can sit in a collective for as long as the other rank waits. So
    the first signal halts the work in flight and is passed on at once, and a second one
    ends the process within :attr:`grace_s` wherever its main thread is.

    ``forward`` is called with each counted signal (Lightning's launcher passes it on to the
    DDP worker processes it started; from the second on it waits for them to exit)."""

    def __init__(self, forward: Callable[[int], None] | None = None) -> None:
        self.forward = forward
        #: The first signal received (None: no stop requested).
        self.signal: int | None = None
        #: Called with the first signal: cut the work in flight short (no blocking here).
        self.on_request: Callable[[], None] | None = None
        #: The line a second signal prints on its way out: which checkpoint resumes the run.
        self.resume_hint: Callable[[], str] | None = None
        #: A second signal arrived: the process is exiting.
        self.exiting = False
        #: Seconds from a second signal to the forced exit. A DDP worker rank's is shorter
        #: than the time rank 0 waits for it (``WorkerForward``) before Lightning kills it.
        self.grace_s = EXIT_GRACE_S
        self._first_at: float | None = None
        self._raise = False
        self._closing = False
        self._previous: dict[int, object] = {}
        self._wakeup: tuple[int, int] | None = None
        self._previous_wakeup = -1

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def installed(self) -> bool:
        return self._wakeup is not None

    def install(self) -> None:
        """Handle SIGINT/SIGTERM from now on (again, if something replaced the handlers
        since; :meth:`uninstall` restores those found at the first call)."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in SIGNALS:
            previous = signal.getsignal(sig)
            if sig not in self._previous:
                self._previous[sig] = previous
            signal.signal(sig, self._handle)
        if self._wakeup is None:
            read, write = os.pipe()
            os.set_blocking(write, False)
            self._previous_wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
            self._wakeup = (read, write)
            threading.Thread(target=self._watch, args=(read,), name="vlmrm-signals",
                             daemon=True).start()

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            read, write = self._wakeup
            self._wakeup = None
            os.write(write, b"\0")  # the watching thread ends (and closes its end)
            os.close(write)

    def request(self, signum: int) -> None:
        """Record a stop (as a first signal does, without forwarding it)."""
        if self.signal is None:
            self.signal = signum
            if self.on_request is not None:
                self.on_request()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """The Python-level handler: the signal itself is the watching thread's; this only
        raises the KeyboardInterrupt that unwinds the run once a second signal was counted."""
        if self._raise and not self._closing:
            self._raise = False
            raise KeyboardInterrupt

    def closing(self) -> None:
        """The run is closing its work (the ``finally`` around training): a second signal no
        longer interrupts the main thread there, which would cut the closing short; the
        watchdog still bounds the exit."""
        self._closing = True

    def _watch(self, read: int) -> None:
        try:
            while True:
                data = os.read(read, 64)
                if not data or 0 in data:
                    return
                for signum in data:
                    if signum in SIGNALS:
                        self.received(signum)
        finally:
            os.close(read)

    def received(self, signum: int) -> None:
        """Count one SIGINT/SIGTERM (as it arrives, on the watching thread)."""
        now = time.monotonic()
        if self.exiting or (self._first_at is not None and now - self._first_at < SAME_SIGNAL_S):
            return  # on the way out; or the first one again, sent to each process
        if self._first_at is not None:
            self._exit_now(signum)
            return
        self._first_at = now
        name = signal.Signals(signum).name
        print(f"\nvlmrm: {name} received: stopping at the next env step or encoder pass, then "
              "writing a checkpoint to resume from (Ctrl-C again to exit at once, without one).",
              file=sys.stderr, flush=True)
        self.request(signum)
        if self.forward is not None:
            self.forward(signum)

    def _exit_now(self, signum: int) -> None:
        """The second signal: a watchdog bounds the exit, DDP workers get the signal (and
        time to close their own collectors), then a KeyboardInterrupt unwinds the run,
        closing the collector and env workers."""
        self.exiting = True
        print("\nvlmrm: second signal: exiting now, without a new checkpoint.",
              file=sys.stderr, flush=True)
        threading.Thread(target=self._watchdog, name="vlmrm-exit", daemon=True).start()
        if self.forward is not None:
            self.forward(signum)
        if not self._closing:  # the main thread is not on its way out already
            self._raise = True
            _thread.interrupt_main(signal.SIGINT)  # runs _handle on the main thread

    def _watchdog(self) -> None:
        time.sleep(self.grace_s)
        for child in multiprocessing.active_children():
            kill_tree(child)
        print(f"vlmrm: exit forced after {self.grace_s:.1f} s. {self.hint()}", file=sys.stderr,
              flush=True)
        end_process(EXIT_INTERRUPTED)  # the children are gone: their joins return at once

    def hint(self) -> str:
        """Which checkpoint a resume would use (the line a second signal ends with)."""
        try:
            return self.resume_hint() if self.resume_hint is not None else ""
        except Exception as err:  # a hint must never stand in the way of exiting
            return f"(could not look for a checkpoint: {err})"


def kill_tree(child: multiprocessing.process.BaseProcess) -> None:
    """SIGKILL ``child``, and the processes it started when it leads a process group of its
    own (the process collector does, so its env workers end with it)."""
    try:
        if os.getpgid(child.pid) == child.pid:
            os.killpg(child.pid, signal.SIGKILL)
            return
    except (ProcessLookupError, PermissionError):
        pass
    child.kill()


def stop_latency_note(pass_s: float, pass_frames: int, streamed: bool, update_s: float,
                      timeout_s: float) -> str | None:
    """What a run prints when a stop may take longer than ``logging.stop_timeout_s``: a stop
    waits for the encoder pass in flight (``pass_frames`` frames, ``pass_s`` seconds as
    measured) and for the update phase in flight (``update_s``). None when it fits."""
    latency = pass_s + update_s
    if latency <= timeout_s:
        return None
    if pass_s >= update_s:
        fix = ("Encoder passes are cut at reward.stream_frames frames (at most reward.batch_size)"
               f": lower them so that one pass takes well under {timeout_s:g} s"
               if streamed else
               "This batch is scored in one go after its last step: set reward.stream_frames "
               "(with agent.overlap=true) to score it in passes a stop can cut between, or lower "
               "agent.train_freq or env.num_envs")
    else:
        fix = "Lower agent.gradient_steps (updates per iteration), which a stop lets finish"
    return (f"vlmrm: note: a stop (SIGTERM, Ctrl-C) may take about {latency:.0f} s here, more "
            f"than logging.stop_timeout_s={timeout_s:g}: one encoder pass of {pass_frames} "
            f"frames takes {pass_s:.1f} s and one update phase {update_s:.1f} s. {fix}; or give "
            "the job more time between SIGTERM and the kill and raise logging.stop_timeout_s.")


def end_process(code: int) -> None:
    """Exit now with ``code`` once the work is closed: multiprocessing's finalizers release
    shared memory and semaphores, and the interpreter's own teardown (library destructors,
    seconds here) is skipped."""
    multiprocessing.util._exit_function()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


#: Seconds a second signal waits for DDP workers to exit before Lightning kills them (a
#: worker forces its own exit after WORKER_GRACE_S, its replay buffer's semaphores released).
WORKER_EXIT_S = WORKER_GRACE_S + 1.0


class WorkerForward:
    """Passes signals on to the DDP worker processes Lightning's launcher started. From the
    second on, it also waits for them briefly, so that they close their collectors and env
    workers before Lightning kills them."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher
        self.calls = 0

    def __call__(self, signum: int) -> None:
        if self.calls >= 1:
            stop_watching_workers()
        self.launcher.kill(signum)
        self.calls += 1
        if self.calls < 2:
            return
        deadline = time.monotonic() + WORKER_EXIT_S
        for proc in getattr(self.launcher, "procs", []):
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


def stop_watching_workers() -> None:
    """Stop Lightning's watch over the worker ranks: once one exits non-zero (130, after a
    second signal) it SIGKILLs every rank, this one too, before it closed its collector."""
    from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver

    for thread in threading.enumerate():
        if isinstance(thread, _ChildProcessObserver):
            thread._run = lambda: True  # its next check ends it


def forward_to_workers(launcher: Any) -> WorkerForward | None:
    return None if launcher is None else WorkerForward(launcher)
