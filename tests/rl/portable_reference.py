"""The sequential reference run on kernels that every x86-64 CPU with AVX2 computes alike.

``tests/rl/test_sequential_reference.py`` checks the loop against files recorded on an
AVX-512 CPU, with torch's native kernels: it can only run there. This module runs the same
runs in a child process whose kernel choice is pinned by ``PORTABLE_ENV`` before torch is
imported, so that a CPU with or without AVX-512, Intel or AMD, takes the same code paths
and computes the same bits (tests/data/README.md, "Portable reference"):

    python -m tests.rl.portable_reference record quickstart tests/data
    python -m tests.rl.portable_reference run quickstart OUT.safetensors [--steps N]

``run`` writes what the run produced; ``tests/rl/test_portable_reference.py`` compares it
with ``tests/data/sequential_portable_<run>.safetensors``. ``--steps`` stops early (for slow
CPU emulators): the first N env steps and their updates are a prefix of the full run's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

#: Set in the child's environment before torch loads (none of them can change afterwards).
#: ATen's vectorised kernels at their AVX2 build, not AVX-512; MKL's BLAS (sgemm, sgemm_batch,
#: sgemv) on its COMPATIBLE branch in strict mode: the one branch MKL computes alike on Intel
#: and non-Intel CPUs (its AVX2 branch is Intel-only; elsewhere MKL falls back to a
#: CPU-specific one); oneDNN's JIT kernels capped at AVX2; one thread.
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
#: Defaults and shipped config values that changed after the AVX-512 recording, set back to
#: the recorded ones: the update is TorchRL's SAC loss, collection is sequential, the
#: mountaincar preset's later critic, episode end and action noise are undone; the reward
#: model stays fp32 whatever a CPU's native bf16 would make ``auto`` choose.
PINNED = ["reward.precision=32", "agent.activation=tanh", "agent.loss_impl=torchrl", "agent.critic_loss=smooth_l1",
          "env.episode_end=truncate", "agent.action_noise=null", "agent.overlap=false"]
RUNS = {
    "quickstart": ("configs/quickstart.yaml", [
        "agent.total_env_steps=1000", "agent.learning_starts=200", "agent.eval_every=0",
        "logging.checkpoint_every=100000", "trainer.enable_progress_bar=false", "seed=0"]),
    "mountaincar": ("configs/mountaincar.yaml", [
        "reward.model=vlmrm-demo", "reward.batch_size=256", "agent.total_env_steps=1000",
        "agent.learning_starts=200", "agent.eval_every=0", "agent.train_freq=8",
        "agent.gradient_steps=8", "logging.checkpoint_every=100000",
        "trainer.enable_progress_bar=false", "seed=0"]),
}
LOSS_KEYS = ("loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy")


def portable_env() -> dict[str, str]:
    """This process's environment with the kernel choice pinned, for a child process."""
    return {**os.environ, **PORTABLE_ENV, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])}


def _child_cmd(name: str, out: Path, steps: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "tests.rl.portable_reference", "run", name, str(out)]
    return cmd + ["--steps", str(steps)] if steps else cmd


def run_in_child(name: str, out: Path, steps: int | None = None,
                 timeout: float = 900) -> subprocess.CompletedProcess:
    """Runs ``name`` in a fresh interpreter with ``PORTABLE_ENV``; its tensors go to ``out``."""
    return subprocess.run(_child_cmd(name, out, steps), cwd=ROOT, env=portable_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_in_child(name: str, out: Path, steps: int | None = None) -> subprocess.Popen:
    """:func:`run_in_child` without waiting: several runs can share the CPU's cores."""
    return subprocess.Popen(_child_cmd(name, out, steps), cwd=ROOT, env=portable_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ieee_sqrt() -> list[int]:
    """Routes ``aten::sqrt`` on CPU to a correctly rounded square root; returns a call counter.

    torch computes float sqrt on CPU with MKL's vector math (VML), whose kernels start from the
    CPU's ``rsqrtps`` estimate (``vrsqrt14ps`` on AVX-512), an approximation that Intel and AMD
    CPUs (and emulators) implement differently, and no MKL setting changes that kernel on
    non-Intel CPUs. Adam's ``exp_avg_sq.sqrt()`` goes through it on every step. NumPy's sqrt is
    the IEEE instruction, correctly rounded on every CPU. Only the portable child uses this.
    """
    import numpy as np
    import torch

    calls = [0]

    def root(x):
        if x.dtype not in (torch.float32, torch.float64):
            raise NotImplementedError(f"portable sqrt covers float32/float64, not {x.dtype}")
        calls[0] += 1
        return torch.from_numpy(np.asarray(np.sqrt(x.detach().numpy())))

    def sqrt_out(x, *, out):
        out.resize_(x.shape).copy_(root(x))
        return out

    lib = torch.library.Library("aten", "IMPL")
    lib.impl("sqrt", root, "CPU")
    lib.impl("sqrt.out", sqrt_out, "CPU")
    lib.impl("sqrt_", lambda x: x.copy_(root(x)), "CPU")
    ieee_sqrt.lib = lib  # registrations last as long as the library object
    return calls


def make_recorder():
    import lightning as L
    import torch

    class Recorder(L.Callback):
        """Each SAC update's loss outputs and, at the end, the replay buffer and the actor."""

        def __init__(self) -> None:
            self.losses: list[dict[str, torch.Tensor]] = []
            self.replay = None
            self.actor: dict[str, torch.Tensor] = {}

        def on_fit_start(self, trainer, module) -> None:
            module.update_loss.register_forward_hook(
                lambda _m, _args, out: self.losses.append(
                    {k: v.detach().clone() for k, v in out.items()}))

        def on_train_end(self, trainer, module) -> None:
            self.replay = module.data.replay_buffer[:]
            self.actor = {k: v.detach().clone() for k, v in module.actor.state_dict().items()}

    return Recorder()


def run(name: str, steps: int | None = None) -> dict:
    """Trains run ``name`` in this process; returns its tensors, named as in the reference."""
    import torch

    from vlmrm.commands.fit import fit
    from vlmrm.config import load_config

    sqrt_calls = ieee_sqrt()
    config, overrides = RUNS[name]
    extra = [f"agent.total_env_steps={steps}"] if steps else []
    recorder = make_recorder()
    with tempfile.TemporaryDirectory(prefix="vlmrm-portable-") as tmp:
        cfg = load_config(ROOT / config, [*overrides, *PINNED, *extra,
                                          f"logging.output_dir={tmp}", "logging.run_name=ref"])
        fit(cfg, callbacks=[recorder])
    replay = recorder.replay
    out = {"action": replay["action"].float(), "observation": replay["observation"],
           "next_observation": replay["next", "observation"],
           "reward": replay["next", "reward"].reshape(-1),
           "done": replay["next", "done"].reshape(-1).to(torch.uint8)}
    for key in LOSS_KEYS:
        out[f"update_{key}"] = torch.stack(
            [o[key].float().reshape(()) for o in recorder.losses])
    out.update({f"final_actor.{k}": v for k, v in recorder.actor.items()})
    run.sqrt_calls = sqrt_calls[0]
    return {k: v.detach().float().contiguous() if v.dtype != torch.uint8 else v.contiguous()
            for k, v in out.items()}


def differences(ours: dict, ref: dict) -> list[str]:
    """One line per tensor of ``ref`` that ``ours`` lacks or does not match bit for bit; a
    shorter ``ours`` (an early stop) is compared with the same-length prefix of ``ref``."""
    import torch

    lines = []
    for key, want in ref.items():
        got = ours.get(key)
        if got is None:
            lines.append(f"{key}: missing")
            continue
        if not key.startswith("final_") and got.ndim and len(got) < len(want):
            want = want[:len(got)]
        if got.shape != want.shape or got.dtype != want.dtype:
            lines.append(f"{key}: {got.dtype}{list(got.shape)} != {want.dtype}{list(want.shape)}")
        elif not torch.equal(got, want):
            diff = (got.double() - want.double()).abs().reshape(-1)
            first = int((diff > 0).nonzero()[0])
            lines.append(f"{key}: first differs at flat index {first} "
                         f"({got.reshape(-1)[first].item()!r} != {want.reshape(-1)[first].item()!r}),"
                         f" max abs diff {diff.max().item():.3g}")
    return lines


def provenance(name: str) -> dict:
    import torch

    return {"run": name, "config_path": RUNS[name][0], "overrides": RUNS[name][1],
            "pinned": PINNED, "environment": PORTABLE_ENV,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "python": platform.python_version(),
            "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True,
                                     capture_output=True).stdout.strip()}


def main(argv: list[str] | None = None) -> None:
    from safetensors.torch import save_file

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["run", "record"])
    p.add_argument("name", choices=sorted(RUNS))
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=None)
    args = p.parse_args(argv)
    missing = {k: v for k, v in PORTABLE_ENV.items() if os.environ.get(k) != v}
    if missing:
        sys.exit(f"set {missing} in the environment before starting Python (torch reads "
                 "them once, at import): run through run_in_child()")
    tensors = run(args.name, args.steps)
    meta = {**provenance(args.name), "ieee_sqrt_calls": run.sqrt_calls}
    path = args.out
    if args.mode == "record":
        path = args.out / f"sequential_portable_{args.name}.safetensors"
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    save_file(tensors, str(path), metadata={"json": json.dumps(meta, sort_keys=True)})
    print(f"{args.name}: {len(tensors['reward'])} env steps, "
          f"{len(tensors['update_loss_actor'])} updates -> {path}")


if __name__ == "__main__":
    main()
