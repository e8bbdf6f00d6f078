"""Graceful interrupts: SIGINT or SIGTERM (a cluster's pre-emption) asks the run to stop.

The handler only records the request. Training checks it once per iteration, where every
DDP rank agrees to stop at the same iteration; the run then finishes that iteration's
updates, writes ``last.ckpt`` with the replay buffer and everything else a resume needs, and
exits with :data:`EXIT_INTERRUPTED`. A second SIGINT exits at once (KeyboardInterrupt).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

#: Exit code of a run stopped by SIGINT/SIGTERM after writing its checkpoint (resumable).
EXIT_INTERRUPTED = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Installs SIGINT/SIGTERM handlers (main thread only) that record a stop request.

    ``forward`` is called once with the first signal (Lightning's launcher passes it on to
    the DDP worker processes it started)."""

    def __init__(self, forward: Callable[[int], None] | None = None) -> None:
        self.forward = forward
        #: The first signal received (None: no stop requested).
        self.signal: int | None = None
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

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # the second Ctrl-C: stop now, no checkpoint
            return
        self.signal = signum
        name = signal.Signals(signum).name
        print(f"\nvlmrm: {name} received: finishing this iteration, then writing a checkpoint "
              "to resume from (Ctrl-C again to exit at once).", file=sys.stderr, flush=True)
        if self.forward is not None:
            self.forward(signum)
