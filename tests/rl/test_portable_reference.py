"""The strictly sequential training loop reproduces, bit for bit, a reference recorded with
kernels pinned to their portable family (``tests.rl.portable_reference.PORTABLE_ENV``): every
env step's action, observation, VLM reward and done flag, every SAC update's losses, alpha and
entropy, and the final actor.

``test_sequential_reference.py`` guards the native kernels, but only on the AVX-512 CPU it was
recorded on. This test runs on every x86-64 CPU with AVX2, with or without AVX-512, Intel or
AMD: the run happens in a child process whose ATen, MKL and oneDNN kernels are pinned before
torch loads (tests/data/README.md, "Portable reference").
"""

from __future__ import annotations

import json
import platform

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.rl.portable_reference import DATA, RUNS, differences, start_in_child

#: The pinned kernels need AVX2 and FMA; elsewhere ATen would fall back without saying so.
HAS_AVX2 = (platform.machine().lower() in ("x86_64", "amd64")
            and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"))


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    """Both runs, started together: each child is single-threaded (one core each), so the
    pair takes the time of one. Each test waits for its own."""
    out = tmp_path_factory.mktemp("portable")
    procs = {run: (start_in_child(run, out / f"{run}.safetensors"), out / f"{run}.safetensors")
             for run in RUNS}
    yield procs
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.skipif(not HAS_AVX2, reason="the portable kernels are x86-64 AVX2 kernels")
@pytest.mark.parametrize("run", ["quickstart", "mountaincar"])
def test_sequential_loop_matches_the_portable_reference(run, children):
    proc, out = children[run]
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stdout[-2000:] + stderr[-4000:]
    with safe_open(out, "pt") as f:
        child = json.loads(f.metadata()["json"])
    assert child["cpu_capability"] == "AVX2", "the child did not run ATen's AVX2 kernels"
    assert child["ieee_sqrt_calls"] > 0, "Adam's sqrt no longer reaches aten::sqrt on CPU"

    ours = load_file(out)
    ref = load_file(DATA / f"sequential_portable_{run}.safetensors")
    assert len(ours["reward"]) == 1000 and len(ours["update_loss_actor"]) == 800
    assert ours.keys() == ref.keys()
    assert differences(ours, ref) == []
