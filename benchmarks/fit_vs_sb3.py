"""`vlmrm fit` against Stable-Baselines3's `SAC.learn()` end to end on Pendulum-v1.

Both learn from the env's own reward with one update per env step, batch 256, ReLU
[256, 256] MLPs, learned entropy coefficient, 100 random steps first, one torch thread.
Rounds alternate (vlmrm, SB3, vlmrm, ...) so that both see the same machine load; each
reports env steps/s over its training loop (vlmrm: from training start to end, SB3: the
whole ``learn()`` call), and the ratio is the median of per-round ratios.

    python benchmarks/fit_vs_sb3.py [--steps 2500] [--rounds 3] [key=value ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time

import lightning as L
import torch

from vlmrm.commands.fit import fit
from vlmrm.config import load_config

PENDULUM = ["env.id=Pendulum-v1", "reward.backend=ground_truth", "agent.train_freq=1",
            "agent.gradient_steps=1", "agent.batch_size=256", "agent.learning_starts=100",
            "agent.hidden_sizes=[256,256]", "agent.activation=relu", "agent.critic_loss=l2",
            "agent.eval_every=0", "logging.checkpoint_every=100000000",
            "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]


class LoopClock(L.Callback):
    """Seconds from the first training iteration to the end of the last."""

    def on_train_start(self, trainer, module) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer, module) -> None:
        self.seconds = time.perf_counter() - self.start


def vlmrm_rate(steps: int, overrides: list[str]) -> float:
    clock = LoopClock()
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(None, [*PENDULUM, f"agent.total_env_steps={steps}",
                                 f"logging.output_dir={out}", *overrides])
        with contextlib.redirect_stdout(sys.stderr):  # Lightning's model summary
            fit(cfg, callbacks=[clock])
    return steps / clock.seconds


def sb3_rate(steps: int) -> float:
    try:
        from stable_baselines3 import SAC
    except ImportError as err:
        raise ImportError("Stable-Baselines3 is needed: pip install vlmrm[bench]") from err
    model = SAC("MlpPolicy", "Pendulum-v1", batch_size=256, learning_starts=100,
                train_freq=1, gradient_steps=1, device="cpu", seed=0,
                policy_kwargs={"net_arch": [256, 256]})
    start = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the results to this file")
    args, overrides = p.parse_known_args(argv)
    torch.set_num_threads(1)
    ours, theirs = [], []
    for r in range(args.rounds):
        ours.append(vlmrm_rate(args.steps, overrides))
        theirs.append(sb3_rate(args.steps))
        print(f"round {r + 1}: vlmrm fit {ours[-1]:.1f} env steps/s, "
              f"SB3 learn {theirs[-1]:.1f} env steps/s", flush=True)
    ratio = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
    result = {"steps": args.steps, "overrides": overrides, "vlmrm": ours, "sb3": theirs,
              "vlmrm_median": statistics.median(ours), "sb3_median": statistics.median(theirs),
              "ratio": ratio}
    print(f"vlmrm fit / SB3 learn: {ratio:.2f}x (median of per-round ratios)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
