"""Errors users can fix: the CLI prints their message and exits with their ``exit_code``.

Exit codes (documented in docs/checkpoints-and-resume.md):

- 2: bad input (config value, path, prompt, checkpoint, unavailable model): nothing ran;
- 3: the run stopped on a non-finite value (NaN/inf reward or loss); its last good
  checkpoint is kept.

Distinct codes let a job script tell "fix the config" from "training diverged" without
parsing messages (e.g. to decide whether requeueing a pre-empted job makes sense).
"""

from __future__ import annotations

from pathlib import Path


def one_paragraph(text: str) -> str:
    """``text`` on one line: library messages often span lines, ours are one paragraph."""
    return " ".join(text.split())


class VLMRMError(Exception):
    """Base class of user-facing errors."""

    exit_code = 2


class ConfigError(VLMRMError):
    """A configuration value is wrong; the message names it and the fix."""


class ModelUnavailableError(VLMRMError):
    """A reward model cannot be loaded (not cached and not downloadable, unknown name, ...)."""


class NonFiniteError(VLMRMError):
    """Training produced a NaN or infinite reward, loss or parameter; the run stopped.

    Raised on every rank at the same iteration. The checkpoint callback fills in
    :attr:`last_good` (the newest checkpoint on disk, written before the problem) so the
    message says what was kept.
    """

    exit_code = 3

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        #: The newest checkpoint written before the problem; None when there is none yet.
        self.last_good: Path | None = None
        #: Set once the checkpoint callback has looked (so "none yet" can be said truthfully).
        self.checked_checkpoints = False

    def __str__(self) -> str:
        if not self.checked_checkpoints:
            return self.message
        if self.last_good is None:
            kept = "No checkpoint had been written yet, so nothing was kept."
        else:
            kept = (f"This state was not saved; the last good checkpoint is {self.last_good} "
                    "(written before the problem, with finite parameters).")
        return f"{self.message} {kept}"
