"""The strictly sequential training loop reproduces, bit for bit, a reference recorded from
the loop as it was at commit 6834c13 (see tests/data/README.md): every env step's action,
observation and VLM reward, every SAC update's losses, and the final actor.

Defaults that changed since the recording are pinned back in ``PINNED``, so the test checks
the loop, not the defaults.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import ROOT
from tests.rl.portable_reference import make_recorder
from vlmrm.commands.fit import fit
from vlmrm.config import load_config

DATA = ROOT / "tests" / "data"
#: Defaults and shipped config values that changed after the recording, set back to the
#: recorded ones (the default update is now vlmrm's fast one; collection now overlaps the
#: learner; the mountaincar preset now has the original code's l2 critic, terminal episode end
#: and OU action noise; the reward model stays fp32 whatever ``reward.precision: auto`` picks).
PINNED = ["reward.precision=32", "agent.activation=tanh", "agent.loss_impl=torchrl",
          "agent.critic_loss=smooth_l1", "env.episode_end=truncate", "agent.action_noise=null",
          "agent.overlap=false"]
#: Float results are exact only on the same CPU code path (BLAS kernels differ by ISA);
#: test_portable_reference.py guards the same runs on every x86-64 CPU with AVX2.
RECORDED_CPU = "AVX512"


#: The portable test's recorder (test_determinism.py extends it).
Recorder = type(make_recorder())


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() != RECORDED_CPU,
                    reason=f"reference recorded on a {RECORDED_CPU} CPU; float kernels differ")
@pytest.mark.parametrize("run", ["quickstart", "mountaincar"])
def test_sequential_loop_matches_the_recorded_reference(run, tmp_path):
    meta = json.loads((DATA / f"sequential_{run}.json").read_text())
    ref = load_file(DATA / f"sequential_{run}.safetensors")
    cfg = load_config(ROOT / meta["config_path"], [
        *meta["overrides"], *PINNED, f"logging.output_dir={tmp_path}", "logging.run_name=ref"])
    recorder = Recorder()
    fit(cfg, callbacks=[recorder])

    replay = recorder.replay
    assert len(replay) == 1000
    for ours, theirs in [(replay["action"].float(), "action"),
                         (replay["observation"], "observation"),
                         (replay["next", "observation"], "next_observation"),
                         (replay["next", "reward"].reshape(-1), "reward"),
                         (replay["next", "done"].reshape(-1).to(torch.uint8), "done")]:
        assert torch.equal(ours, ref[theirs]), f"{theirs} differs from the reference"
    assert len(recorder.losses) == len(ref["update_loss_actor"]) == 800
    for key in ("loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy"):
        ours = torch.stack([out[key].float().reshape(()) for out in recorder.losses])
        assert torch.equal(ours, ref[f"update_{key}"]), f"{key} differs from the reference"
    final = {k.removeprefix("final_actor."): v for k, v in ref.items()
             if k.startswith("final_actor.")}
    assert final.keys() == recorder.actor.keys()
    for key, value in final.items():
        assert torch.equal(recorder.actor[key], value), f"final actor {key} differs"
