"""`vlmrm fit` (the real CLI) with one rank's reward model returning NaN for one batch.

Run as a script: DDP's launcher re-runs this command line for the other ranks, so every
rank gets the same wrapper. Arguments: POISONED_RANK BAD_CALL, then `vlmrm fit`'s own.
"""

from __future__ import annotations

import sys

import lightning as L

import vlmrm.commands.fit
from vlmrm.cli import main


class PoisonRank(L.Callback):
    def __init__(self, rank: int, bad_call: int) -> None:
        self.rank, self.bad_call, self.calls = rank, bad_call, 0

    def on_train_start(self, trainer, module) -> None:
        if module.global_rank != self.rank:
            return
        model = module.data.scorer.model  # the seam scores through model.score
        real = model.score

        def scored(windows):
            self.calls += 1
            rewards = real(windows)
            return rewards * float("nan") if self.calls == self.bad_call else rewards

        model.score = scored


if __name__ == "__main__":
    rank, bad_call, *argv = sys.argv[1:]
    real_fit = vlmrm.commands.fit.fit

    def fit(cfg, config_path=None, callbacks=(), **kwargs):
        return real_fit(cfg, config_path, [*callbacks, PoisonRank(int(rank), int(bad_call))],
                        **kwargs)

    vlmrm.commands.fit.fit = fit
    sys.exit(main(argv))
