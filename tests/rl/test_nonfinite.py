"""NaN/inf guards: a non-finite reward never reaches the replay buffer and its frames are
saved; a non-finite loss stops the run; the last good checkpoint is what stays on disk."""

from __future__ import annotations

import subprocess
import sys

import lightning as L
import numpy as np
import pytest
import torch

from tests.helpers import CONFIGS, QUIET, ROOT
from vlmrm.cli import main
from vlmrm.collect.nonfinite import LOSS, REWARD, NonFiniteBatch, agree_to_stop
from vlmrm.commands.fit import fit
from vlmrm.config import load_config
from vlmrm.errors import NonFiniteError

#: CartPole (8 steps per iteration), a random-weight toy reward model, checkpoints every 16.
SMALL = (*QUIET, "reward.backend=toy", "reward.model=random", "reward.pretrained=false",
         "agent.hidden_sizes=[16,16]", "agent.batch_size=16", "agent.learning_starts=16",
         "agent.train_freq=8", "agent.gradient_steps=2", "agent.eval_every=0",
         "agent.total_env_steps=160", "logging.checkpoint_every=16", "env.episode_length=20")

#: What the good iterations left: two step checkpoints with their data state, nothing else.
GOOD = ["step-16.ckpt", "step-16.data-r0", "step-32.ckpt", "step-32.data-r0"]


class PoisonedReward(L.Callback):
    """Wraps the run's reward model so that scoring call ``bad_call`` (1-based) returns
    NaN for one frame; keeps the module to inspect it afterwards."""

    def __init__(self, bad_call: int) -> None:
        self.bad_call, self.calls, self.module = bad_call, 0, None

    def on_train_start(self, trainer, module) -> None:
        self.module = module
        model = module.data.scorer.model  # the seam scores through model.score
        real = model.score

        def scored(windows: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            rewards = real(windows)
            if self.calls == self.bad_call:
                rewards = rewards.clone()
                rewards.reshape(-1)[3] = float("nan")
            return rewards

        model.score = scored


class PoisonedCritic(L.Callback):
    """Puts a NaN into a critic weight once the run reaches ``at_step`` env steps."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer, module, *args) -> None:
        if module.env_steps == self.at_step:
            with torch.no_grad():
                next(iter(module.loss_module.qvalue_network_params.values(True, True)))[0] = \
                    float("nan")


def _config(tmp_path, *overrides):
    return load_config(CONFIGS / "cartpole.yaml", [*SMALL, f"logging.output_dir={tmp_path}",
                                                   "logging.run_name=run", *overrides])


def test_nan_reward_stops_before_the_replay_buffer_and_saves_the_frames(tmp_path):
    poison = PoisonedReward(bad_call=5)  # the batch of env steps 33-40
    with pytest.raises(NonFiniteError) as caught:
        fit(_config(tmp_path), callbacks=[poison])
    run = tmp_path / "run"
    message = str(caught.value)
    assert "non-finite reward (NaN or inf) for 1 of the 8 frames" in message
    assert "env steps 33-40" in message and "the batch was not stored" in message
    assert f"last good checkpoint is {run / 'checkpoints' / 'step-32.ckpt'}" in message
    assert caught.value.exit_code == 3

    stored = poison.module.data.replay_buffer[:]
    assert len(stored) == 32 and torch.isfinite(stored["next", "reward"]).all()
    evidence = np.load(run / "nonfinite" / "steps-33-40.npz", allow_pickle=False)
    assert evidence["frames"].shape[0] == 8 and evidence["frames"].dtype == np.uint8
    assert np.isnan(evidence["rewards"][3]) and np.isfinite(np.delete(evidence["rewards"], 3)).all()
    assert evidence["observation"].shape == (8, 4)
    assert (run / "nonfinite" / "steps-33-40.png").stat().st_size > 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        *GOOD]  # no last.ckpt of the stopped state


def test_nan_loss_stops_and_the_saved_state_is_the_last_good_one(tmp_path):
    with pytest.raises(NonFiniteError) as caught:
        fit(_config(tmp_path), callbacks=[PoisonedCritic(at_step=40)])
    ckpts = tmp_path / "run" / "checkpoints"
    message = str(caught.value)
    assert "The SAC update after env steps 41-48 produced non-finite values" in message
    assert "loss/critic=nan" in message and "agent.learning_rate" in message
    assert f"last good checkpoint is {ckpts / 'step-32.ckpt'}" in message
    assert sorted(p.name for p in ckpts.iterdir()) == GOOD
    good = torch.load(ckpts / "step-32.ckpt", weights_only=True)
    assert good["vlmrm"]["env_steps"] == 32
    assert all(torch.isfinite(v).all() for v in good["state_dict"].values()
               if v.is_floating_point())


def test_a_non_finite_state_is_never_checkpointed(tmp_path):
    """A NaN parameter that no loss has met yet (no updates before step 1000) is caught by
    the checkpoint due next."""
    with pytest.raises(NonFiniteError, match="state is non-finite at env step 48") as caught:
        fit(_config(tmp_path, "agent.learning_starts=1000"),
            callbacks=[PoisonedCritic(at_step=40)])
    assert "step-48.ckpt was not written" in str(caught.value)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == GOOD


def test_diverging_run_exits_3_with_one_message(tmp_path, capsys):
    code = main(["fit", "--config", str(CONFIGS / "cartpole.yaml"), *SMALL,
                 "reward.backend=ground_truth", "agent.learning_rate=1e30",
                 f"logging.output_dir={tmp_path}", "logging.run_name=run"])
    err = capsys.readouterr().err
    assert code == 3
    line = err.strip().splitlines()[-1]
    assert line.startswith("vlmrm: error: The SAC update after env steps")
    assert "last good checkpoint is" in line or "No checkpoint had been written yet" in line


@pytest.mark.parametrize("rank", [0, 1])
def test_ranks_agree_to_stop_whichever_rank_met_the_problem(rank, tmp_path):
    """DDP's exchange, with a stand-in for the all-gather: rank 1 met a NaN reward."""
    table = torch.tensor([[0, 0, 0, 0], [REWARD, 9, 16, 0]])
    own = NonFiniteBatch("rank 1's own message", REWARD, 9, 16) if rank == 1 else None
    with pytest.raises(NonFiniteBatch) as caught:
        agree_to_stop(own, 2, lambda mine: table, torch.device("cpu"), tmp_path)
    if rank == 1:
        assert caught.value is own
    else:
        assert str(caught.value).startswith("Rank 1 met a non-finite reward for the batch of "
                                            "rank 1's env steps 9-16")
        assert str(tmp_path / "rank1-steps-9-16") in str(caught.value)
    assert not agree_to_stop(None, 2, lambda mine: torch.zeros(2, 4, dtype=torch.int64),
                             torch.device("cpu"))  # nobody met one: no stop
    with pytest.raises(NonFiniteBatch, match="non-finite SAC loss"):
        agree_to_stop(None, 2, lambda mine: torch.tensor([[LOSS, 1, 8, 0], [0, 0, 0, 1]]),
                      torch.device("cpu"))


def test_ranks_agree_to_stop_when_any_rank_got_a_signal():
    """A signal that reached only rank 1 stops rank 0 at the same iteration."""
    sent = []

    def gather(mine):
        sent.append(mine.tolist())
        return torch.stack([mine, torch.tensor([0, 0, 0, 1])])

    assert agree_to_stop(None, 2, gather, torch.device("cpu"), stop_requested=False)
    assert sent == [[0, 0, 0, 0]]
    assert not agree_to_stop(None, 2, lambda mine: torch.zeros(2, 4, dtype=torch.int64),
                             torch.device("cpu"), stop_requested=False)
    assert agree_to_stop(None, 1, gather, torch.device("cpu"), stop_requested=True)


@pytest.mark.slow
def test_ddp_rank_with_a_nan_reward_stops_both_ranks_without_a_hang(tmp_path):
    """2 CPU ranks (gloo); rank 1's third batch scores NaN. Both ranks stop at the same
    iteration; rank 0 reports rank 1's problem and exits 3 (Lightning's launcher would kill
    rank 0 mid-report if a worker exited non-zero, so workers leave the report to it)."""
    out = tmp_path / "runs"
    cmd = [sys.executable, str(ROOT / "tests" / "rl" / "poisoned_fit.py"), "1", "3",
           "fit", "--config", str(CONFIGS / "cartpole.yaml"), *SMALL,
           "env.num_envs=2",  # counts both ranks: one env each, as the single-rank runs
           "trainer.strategy=ddp", "trainer.devices=2", f"logging.output_dir={out}",
           "logging.run_name=ddp"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    errors = [line for line in done.stderr.splitlines() if line.startswith("vlmrm: error:")]
    assert done.returncode == 3, done.stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith(
        "vlmrm: error: Rank 1 met a non-finite reward for the batch of rank 1's env steps 17-24")
    evidence = np.load(out / "ddp" / "nonfinite" / "rank1-steps-17-24.npz", allow_pickle=False)
    assert np.isnan(evidence["rewards"]).all() and len(evidence["frames"]) == 8
    assert not (out / "ddp" / "checkpoints" / "last.ckpt").exists()
