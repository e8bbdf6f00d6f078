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

import multiprocessing
import multiprocessing.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

#: Exit code of a run stopped by SIGINT/SIGTERM after writing its checkpoint (resumable).
EXIT_INTERRUPTED = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: A signal this soon after the first counts as the same one: a terminal's Ctrl-C or a
#: cluster's SIGTERM reaches every process of a DDP run, which also forwards it.
SAME_SIGNAL_S = 0.5
#: Seconds from a second signal to the process's end, whatever it still waits for.
EXIT_GRACE_S = 3.0


class StopRequest:
    """Installs SIGINT/SIGTERM handlers (main thread only) that record a stop request.

    ``forward`` is called once with the first signal (Lightning's launcher passes it on to
    the DDP worker processes it started)."""

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
        self._first_at = 0.0
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

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

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def request(self, signum: int) -> None:
        """Record a stop (as a first signal does, without forwarding it)."""
        if self.signal is None:
            self.signal = signum
            if self.on_request is not None:
                self.on_request()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            if self.exiting or time.monotonic() - self._first_at < SAME_SIGNAL_S:
                return  # on the way out; or the first one again, sent to each process
            self._exit_now(signum)
        self._first_at = time.monotonic()
        name = signal.Signals(signum).name
        print(f"\nvlmrm: {name} received: stopping at the next env step or encoder pass, then "
              "writing a checkpoint to resume from (Ctrl-C again to exit at once, without one).",
              file=sys.stderr, flush=True)
        self.request(signum)
        if self.forward is not None:
            self.forward(signum)

    def _exit_now(self, signum: int) -> None:
        """The second signal: DDP workers get it too, a watchdog bounds the exit, and the
        KeyboardInterrupt unwinds the run, closing the collector and env workers."""
        self.exiting = True
        print("\nvlmrm: second signal: exiting now, without a new checkpoint.",
              file=sys.stderr, flush=True)
        if self.forward is not None:
            self.forward(signum)
        threading.Thread(target=self._watchdog, name="vlmrm-exit", daemon=True).start()
        raise KeyboardInterrupt

    def _watchdog(self) -> None:
        time.sleep(EXIT_GRACE_S)
        for child in multiprocessing.active_children():
            kill_tree(child)
        print(f"vlmrm: exit forced after {EXIT_GRACE_S:.0f} s. {self.hint()}", file=sys.stderr,
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
