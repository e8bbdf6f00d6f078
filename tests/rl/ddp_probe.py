"""Run `vlmrm fit` under DDP and record what each rank does (used by tests/rl/test_ddp.py).

Lightning's DDP launcher re-runs this script for every rank, so each rank writes
``<out>/rank<r>.json``: its envs per batch, the global env step of its first policy action
(before that: random actions), its minibatch size and first update, and a parameter checksum.

    python tests/rl/ddp_probe.py OUT_DIR key=value ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch

from vlmrm.config import load_config
from vlmrm.train import fit

ROOT = Path(__file__).resolve().parents[2]


class Probe(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.record: dict[str, list] = {"envs_per_batch": [], "policy_steps": [],
                                        "sample_sizes": [], "update_steps": []}

    def on_train_start(self, trainer, module) -> None:
        collect = module.data.collect

        def recording_collect():
            batch = collect()
            self.record["envs_per_batch"].append(batch.batch_size[0])
            return batch

        module.data.collect = recording_collect
        module.actor.register_forward_hook(
            lambda *_: self.record["policy_steps"].append(module.env_steps))
        module.update_loss.register_forward_hook(self._on_update(module))

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
        path = self.out / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.record))


def main() -> None:
    out = Path(sys.argv[1])
    cfg = load_config(ROOT / "configs" / "cartpole.yaml", sys.argv[2:])
    torch.set_num_threads(1)
    result = fit(cfg, callbacks=[Probe(out)])
    if result.primary:
        print(result.report())


if __name__ == "__main__":
    main()
