"""Run `vlmrm fit` under DDP and record what each rank does (used by tests/rl/test_ddp.py).

Lightning's DDP launcher re-runs this script for every rank, so each rank writes
``<out>/rank<r>.json``: its envs per batch, the global env step of its first policy action
(before that: random actions), its minibatch size and first update, a parameter checksum, its
replay buffer's capacity, its first batch's (random-phase) actions and the first noise its
loss draws (continuous actions, ``agent.loss_impl=fast``).

    python tests/rl/ddp_probe.py OUT_DIR [--sigterm-at N] [--resume RUN_DIR] key=value ...

``--sigterm-at N`` sends rank 0 SIGTERM once it has N env steps (Lightning's launcher passes
the signal on to rank 1); the script then exits with the run's code (130: interrupted).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import lightning as L
import torch

from vlmrm.commands.fit import fit
from vlmrm.config import load_config
from vlmrm.interrupt import EXIT_INTERRUPTED
from vlmrm.run.resume import plan_resume

ROOT = Path(__file__).resolve().parents[2]


class Probe(L.Callback):
    def __init__(self, out: Path, sigterm_at: int | None = None) -> None:
        self.out = out
        self.sigterm_at = sigterm_at
        self.record: dict[str, list] = {"envs_per_batch": [], "sample_sizes": [],
                                        "update_steps": []}

    def on_train_start(self, trainer, module) -> None:
        next_batch = module.data.next_batch

        def recording_next_batch(*args, **kwargs):
            got = next_batch(*args, **kwargs)
            self.record["envs_per_batch"].append(got.batch.batch_size[0])
            self.record.setdefault("first_actions", got.batch["action"].flatten().tolist())
            return got

        module.data.next_batch = recording_next_batch
        self.record["random_batches"] = module.data.batches.random_batches
        self.record["buffer_capacity"] = module.data.replay_buffer.storage.max_size
        module.update_loss.register_forward_pre_hook(self._record_noise)
        module.update_loss.register_forward_hook(self._on_update(module))

    def _record_noise(self, *_args) -> None:
        """Keep the first reparameterisation noise the loss draws (torch.randn_like in
        vlmrm.sac.fast_loss), then stop listening."""
        if "first_noise" in self.record:
            return
        randn_like = torch.randn_like

        def recording(*args, **kwargs):
            noise = randn_like(*args, **kwargs)
            self.record["first_noise"] = noise.flatten()[:16].tolist()
            torch.randn_like = randn_like
            return noise

        torch.randn_like = recording

    def on_train_batch_end(self, trainer, module, *args) -> None:
        if (self.sigterm_at is not None and trainer.global_rank == 0
                and module.env_steps >= self.sigterm_at):
            self.sigterm_at = None
            os.kill(os.getpid(), signal.SIGTERM)

    def _on_update(self, module):
        def hook(_m, args, _out):
            batch = args[0]  # a TensorDict (agent.loss_impl=torchrl) or a Minibatch (fast)
            size = batch.observation.shape[0] if isinstance(batch, tuple) else batch.batch_size[0]
            self.record["sample_sizes"].append(size)
            self.record["update_steps"].append(module.env_steps)
        return hook

    def on_train_end(self, trainer, module) -> None:
        params = [p.detach().double() for p in module.loss_module.parameters()]
        self.record["checksum"] = [float(p.sum()) for p in params]
        self.record["world_size"] = trainer.world_size
        self.record["env_steps"] = module.env_steps
        self.record["interrupted"] = module.interrupted
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.record))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--sigterm-at", type=int, default=None)
    parser.add_argument("--resume", default=None)
    args, overrides = parser.parse_known_args()
    torch.set_num_threads(1)
    probe = Probe(args.out, args.sigterm_at)
    if args.resume:
        result = fit(None, resume=plan_resume(args.resume, None, overrides), callbacks=[probe])
    else:
        cfg = load_config(ROOT / "configs" / "cartpole.yaml", overrides)
        result = fit(cfg, callbacks=[probe])
    if result.primary:
        print(result.report())
    return EXIT_INTERRUPTED if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
