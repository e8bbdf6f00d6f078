"""Run `vlmrm fit` and stop it mid-iteration from outside (used by tests/rl/test_stop.py).

    python tests/rl/stop_probe.py OUT_DIR [--arm-at N] [--resume RUN_DIR] key=value ...

``--arm-at N``: once rank 0 has N env steps, the third step of the batch being collected
writes ``OUT_DIR/armed`` and holds the collection there until a signal halts it, so the
signal the test then sends lands mid-iteration, with steps collected and passes encoded.
Each rank writes ``OUT_DIR/rank<r>.pt`` as training ends: its parameters, replay buffer and
env steps. The script exits with the run's code (130: interrupted), as `vlmrm fit` does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning as L
import torch

from vlmrm.commands.fit import fit
from vlmrm.config import load_config
from vlmrm.interrupt import EXIT_INTERRUPTED
from vlmrm.run.resume import plan_resume

ROOT = Path(__file__).resolve().parents[2]
#: Seconds the held collection waits for the test's signal before going on regardless.
HOLD_S = 120.0


class StopProbe(L.Callback):
    def __init__(self, out: Path, arm_at: int | None) -> None:
        self.out = out
        self.arm_at = arm_at

    def on_train_start(self, trainer, module) -> None:
        if self.arm_at is None or trainer.global_rank != 0:
            return
        collection = module.data.batches
        stream, halt = collection.stream, collection.loop.halt
        add, begin = stream.add, stream.begin
        steps = [0]

        def counting_begin(*args):
            steps[0] = 0
            begin(*args)

        def holding_add(frames):
            steps[0] += 1
            add(frames)
            if self.arm_at is not None and module.env_steps >= self.arm_at and steps[0] == 3:
                self.arm_at = None
                (self.out / "armed").write_text(str(module.env_steps))
                deadline = time.monotonic() + HOLD_S
                while not halt.is_set() and time.monotonic() < deadline:
                    time.sleep(0.01)

        stream.begin, stream.add = counting_begin, holding_add

    def on_train_end(self, trainer, module) -> None:
        replay = module.data.replay_buffer
        torch.save({"env_steps": module.env_steps, "interrupted": module.interrupted,
                    "params": {k: v.clone() for k, v in module.loss_module.state_dict().items()},
                    "replay": replay[: len(replay)].to_dict()},
                   self.out / f"rank{trainer.global_rank}.pt")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--arm-at", type=int, default=None)
    parser.add_argument("--resume", default=None)
    args, overrides = parser.parse_known_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    probe = StopProbe(args.out, args.arm_at)
    try:
        if args.resume:
            result = fit(None, resume=plan_resume(args.resume, None, overrides),
                         callbacks=[probe])
        else:
            cfg = load_config(ROOT / "configs" / "quickstart.yaml", overrides)
            result = fit(cfg, callbacks=[probe])
    except KeyboardInterrupt:  # the second signal, as `vlmrm fit` answers it
        return EXIT_INTERRUPTED
    if result.primary:
        print(result.report())
    return EXIT_INTERRUPTED if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
