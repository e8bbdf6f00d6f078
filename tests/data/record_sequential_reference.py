"""Record a bit-exact reference of vlmrm's strictly sequential training loop (CPU).

How the reference files under tests/data/ were made. Run from a checkout of the commit
to record (here 6834c13, the loop before the overlapped/pipelined refactor):

    cd <checkout> && PYTHONPATH=$PWD python record_sequential_reference.py quickstart OUT_DIR
    cd <checkout> && PYTHONPATH=$PWD python record_sequential_reference.py mountaincar OUT_DIR
    python record_sequential_reference.py --compare A.safetensors B.safetensors

It trains with ``vlmrm.commands.fit.fit(load_config(...))`` exactly as ``vlmrm fit`` does and
changes no library file: it only wraps, from the outside,
  * ``vlmrm.run.module.for_replay`` (sees each collected, VLM-scored batch just before it
    goes into the replay buffer: actions, VLM reward, gt_reward, observations, flags),
  * ``SACModule.on_fit_start`` (to get hold of the module, register a forward hook on its
    loss module -- one call per SAC update -- and wrap ``rollout.buffer.sample``),
and after ``fit`` returns it reads the final parameters. Everything is saved as
safetensors (no pickle) plus a JSON of provenance (config path, overrides, seed,
versions, commit, wall time). See README.md next to the outputs for the tensor layout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders headless

RUNS = {
    "quickstart": {
        "config": "configs/quickstart.yaml",
        "overrides": [
            "agent.total_env_steps=1000", "agent.learning_starts=200", "agent.eval_every=0",
            "logging.checkpoint_every=100000", "trainer.enable_progress_bar=false", "seed=0",
        ],
    },
    "mountaincar": {
        "config": "configs/mountaincar.yaml",
        "overrides": [
            "reward.model=vlmrm-demo", "reward.batch_size=256", "agent.total_env_steps=1000",
            "agent.learning_starts=200", "agent.eval_every=0", "agent.train_freq=8",
            "agent.gradient_steps=8", "logging.checkpoint_every=100000",
            "trainer.enable_progress_bar=false", "seed=0",
        ],
    },
}

LOSS_KEYS = ("loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def record(name: str, out_dir: Path, tag: str = "", extra: list[str] | None = None) -> Path:
    import torch
    from safetensors.torch import save_file

    import vlmrm
    import vlmrm.run.module as module_mod
    from vlmrm.commands.fit import fit
    from vlmrm.config import load_config, to_yaml
    from vlmrm.run.module import SACModule

    run = RUNS[name]
    steps: list[dict[str, torch.Tensor]] = []   # one entry per collected batch
    updates: list[dict[str, torch.Tensor]] = []  # one entry per SAC update
    holder: dict[str, object] = {}

    # -- env steps: the batch as it enters the replay buffer --------------------------
    original_for_replay = module_mod.for_replay

    def recording_for_replay(data):
        flat = data.reshape(-1)
        nxt = flat.get("next")
        steps.append({
            "action": flat.get("action").detach().clone(),
            "observation": flat.get("observation").detach().clone(),
            "next_observation": nxt.get("observation").detach().clone(),
            "reward": nxt.get("reward").detach().clone(),
            "gt_reward": nxt.get("gt_reward").detach().clone(),
            "done": nxt.get("done").detach().clone(),
            "terminated": nxt.get("terminated").detach().clone(),
            "truncated": nxt.get("truncated").detach().clone(),
        })
        return original_for_replay(data)

    module_mod.for_replay = recording_for_replay

    # -- SAC updates: a forward hook on the loss module, a wrapper on sample() -----------
    original_on_fit_start = SACModule.on_fit_start

    def on_fit_start(self):
        original_on_fit_start(self)
        holder["module"] = self
        pending: dict[str, torch.Tensor] = {}
        buffer = self.rollout.buffer
        original_sample = buffer.sample

        def sample(*args, **kwargs):
            batch = original_sample(*args, **kwargs)
            idx = batch.get("index").reshape(-1).to("cpu", torch.int64)
            pos = torch.arange(1, idx.numel() + 1, dtype=torch.int64)
            pending["sample_index_checksum"] = torch.stack([idx.sum(), (idx * pos).sum()])
            return batch

        buffer.sample = sample

        def hook(_module, _args, out):
            row = {k: out.get(k).detach().float().mean().reshape(()).cpu().clone()
                   for k in LOSS_KEYS}
            row["sample_index_checksum"] = pending.pop("sample_index_checksum")
            row["env_steps"] = torch.tensor(self.env_steps, dtype=torch.int64)
            updates.append(row)

        self.loss_module.register_forward_hook(hook)

    SACModule.on_fit_start = on_fit_start

    cfg_path = run["config"]
    overrides = list(run["overrides"]) + list(extra or [])  # extra: experiments only
    with tempfile.TemporaryDirectory(prefix="vlmrm-ref-") as tmp:
        full_overrides = overrides + [f"logging.output_dir={tmp}", "logging.run_name=ref"]
        cfg = load_config(cfg_path, full_overrides)
        t0 = time.perf_counter()
        fit(cfg, cfg_path)
        wall = time.perf_counter() - t0

    module = holder["module"]
    tensors: dict[str, torch.Tensor] = {}
    for key in steps[0]:
        cat = torch.cat([s[key] for s in steps])
        if key in ("reward", "gt_reward", "done", "terminated", "truncated"):
            cat = cat.reshape(-1)
        if key in ("done", "terminated", "truncated"):
            cat = cat.to(torch.uint8)
        else:
            cat = cat.to(torch.float32)
        tensors[key] = cat.contiguous()
    for key in updates[0]:
        tensors[f"update_{key}"] = torch.stack([u[key] for u in updates]).contiguous()

    # Final parameters: per-entry checksums of the whole loss module (actor, both critics,
    # target critics, log_alpha, ...), plus the full actor.
    sd = module.loss_module.state_dict()
    names = list(sd)
    sums = [[t.detach().double().sum().item(), t.detach().double().abs().sum().item()]
            for t in sd.values()]
    tensors["final_loss_module_checksums"] = torch.tensor(sums, dtype=torch.float64)
    sha = hashlib.sha256()
    for k, t in sd.items():
        sha.update(k.encode())
        sha.update(t.detach().cpu().contiguous().numpy().tobytes())
    for k, t in module.actor.state_dict().items():
        tensors[f"final_actor.{k}"] = t.detach().cpu().float().contiguous()

    commit = _git("rev-parse", "HEAD")
    meta = {
        "run": name, "config_path": cfg_path, "overrides": overrides,
        "overrides_added_by_script": ["logging.output_dir=<tmp dir>", "logging.run_name=ref"],
        "seed": cfg.seed, "commit": commit,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"sequential_{name}{tag}"
    st_path = out_dir / f"{stem}.safetensors"
    # One metadata key only: safetensors writes several keys in hash order, which would
    # make two identical recordings differ byte-wise.
    save_file(tensors, str(st_path), metadata={"json": json.dumps(
        {**meta, "final_loss_module_checksum_names": names}, sort_keys=True)})

    import lightning
    import open_clip
    import tensordict
    import torchrl

    info = dict(meta)
    info.update({
        "resolved_config_yaml": to_yaml(cfg).replace(tmp, "<tmp dir>"),
        "commit_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "vlmrm_file": vlmrm.__file__,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchrl": torchrl.__version__, "tensordict": tensordict.__version__,
                     "lightning": lightning.__version__, "open_clip": open_clip.__version__},
        "torch_num_threads_after_fit": torch.get_num_threads(),
        "platform": platform.platform(), "processor": platform.processor(),
        "wall_time_fit_s": round(wall, 2),
        "env_steps_recorded": int(tensors["action"].shape[0]),
        "updates_recorded": len(updates),
        "final_loss_module_checksum_names": names,
        "final_loss_module_sha256": sha.hexdigest(),
        "safetensors_file": st_path.name,
        "safetensors_sha256": hashlib.sha256(st_path.read_bytes()).hexdigest(),
        "tensors": {k: [list(v.shape), str(v.dtype)] for k, v in tensors.items()},
        "argv": sys.argv,
    })
    (out_dir / f"{stem}.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"{name}: {info['env_steps_recorded']} env steps, {len(updates)} updates, "
          f"fit {wall:.1f}s -> {st_path}")
    return st_path


def compare(a: str, b: str) -> bool:
    import torch
    from safetensors.torch import load_file

    ta, tb = load_file(a), load_file(b)
    ok = set(ta) == set(tb)
    if not ok:
        print("different tensor names:", sorted(set(ta) ^ set(tb)))
    for k in sorted(set(ta) & set(tb)):
        same = ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k])
        if not same:
            ok = False
            diff = (ta[k].double() - tb[k].double()).abs()
            first = int((diff.reshape(-1) > 0).nonzero()[0]) if diff.numel() else -1
            print(f"DIFFERENT {k}: max abs diff {diff.max().item():.3g}, first flat index {first}")
    print("bit-identical" if ok else "NOT identical", f"({len(ta)} tensors)")
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", nargs="?", choices=sorted(RUNS))
    p.add_argument("out_dir", nargs="?", default="reference")
    p.add_argument("--tag", default="", help="suffix for the output file names")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"))
    p.add_argument("--override", action="append", default=[],
                   help="extra key=value (experiments only; the references use none)")
    args = p.parse_args()
    if args.compare:
        sys.exit(0 if compare(*args.compare) else 1)
    if args.run is None:
        p.error("give a run name or --compare A B")
    record(args.run, Path(args.out_dir).resolve(), args.tag, args.override)


if __name__ == "__main__":
    main()
