"""`SACModule.training_step` with a fake data side: counters, the learning-starts gate, logs.

The fake is only the env side: a scripted stream of batches stands in for the collector
(no env, no reward model). The module, the replay buffer, the episode tracker, the SAC
loss, the optimizer and the Lightning Trainer are the real ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger
from tensordict import TensorDict
from torchrl.data import Bounded, OneHot

from tests.helpers import ROOT
from vlmrm.collect.pipeline import DataPipeline, EpisodeTracker, make_replay_buffer
from vlmrm.config import Config
from vlmrm.keys import GT_REWARD
from vlmrm.reward.seam import Scorer
from vlmrm.run.module import SACModule
from vlmrm.run.plan import plan_run

NUM_ENVS, TRAIN_FREQ, OBS, EPISODE = 2, 4, 3, 6


class RecordingLogger(Logger):
    """A real Lightning logger that keeps what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append((step, dict(metrics)))


def scripted_batches() -> Iterator[TensorDict]:
    """[NUM_ENVS, TRAIN_FREQ] steps; env k earns reward k + 1 per step, episodes of 6 steps."""
    t = 0
    while True:
        steps = torch.arange(t, t + TRAIN_FREQ)
        done = ((steps + 1) % EPISODE == 0).expand(NUM_ENVS, TRAIN_FREQ).unsqueeze(-1)
        reward = torch.arange(1.0, NUM_ENVS + 1).reshape(NUM_ENVS, 1, 1).expand(-1, TRAIN_FREQ, 1)
        action = torch.nn.functional.one_hot(steps % 2, 2).expand(NUM_ENVS, -1, -1)
        obs = torch.randn(NUM_ENVS, TRAIN_FREQ, OBS)
        yield TensorDict({
            "observation": obs, "action": action.clone(),
            "next": {"observation": obs + 0.1, "reward": reward.clone(), "done": done.clone(),
                     "terminated": torch.zeros_like(done), "truncated": done.clone()},
        }, batch_size=[NUM_ENVS, TRAIN_FREQ])
        t += TRAIN_FREQ


def fit_scripted(total: int, learning_starts: int) -> tuple[SACModule, RecordingLogger]:
    cfg = Config()
    a = cfg.agent
    a.total_env_steps, a.learning_starts, a.train_freq, a.gradient_steps = (
        total, learning_starts, TRAIN_FREQ, 2)
    a.batch_size, a.hidden_sizes, a.eval_every = 8, [16], 0
    cfg.env.num_envs = NUM_ENVS

    torch.manual_seed(0)
    module = SACModule(cfg, OBS, OneHot(2))
    module.attach(DataPipeline(
        batches=scripted_batches(), scorer=Scorer(None),
        replay_buffer=make_replay_buffer(1000, torch.device("cpu")),
        episodes=EpisodeTracker(NUM_ENVS)), plan_run(cfg))
    logger = RecordingLogger()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=logger,
                        enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, use_distributed_sampler=False)
    trainer.fit(module)
    return module, logger


def test_counters_gate_and_logs():
    module, logger = fit_scripted(total=40, learning_starts=16)
    steps = [step for step, _ in logger.rows]
    # One training_step per batch of NUM_ENVS x TRAIN_FREQ = 8 env steps, logged at env steps.
    assert steps == [8, 16, 24, 32, 40] and module.env_steps == 40
    assert [row["env_steps"] for _, row in logger.rows] == [8.0, 16.0, 24.0, 32.0, 40.0]
    # No update until more than learning_starts env steps: the first at 24, then every step.
    updated = [step for step, row in logger.rows if "loss/critic" in row]
    assert updated == [24, 32, 40]
    assert module.trainer.global_step == 3 * 2  # gradient_steps per updating iteration
    assert plan_run(module.cfg).updates == module.trainer.global_step  # the plan is exact
    for _, row in logger.rows:
        assert {"perf/env_steps_per_s", "perf/iteration_env_steps_per_s"} <= set(row)
        assert "perf/vlm_frames_per_s" not in row  # no reward model
    last = logger.rows[-1][1]
    assert {"loss/actor", "loss/critic", "loss/alpha", "train/alpha", "train/entropy"} <= set(last)
    assert all(torch.isfinite(torch.tensor(v)) for v in last.values())


def test_finished_episodes_are_logged_when_they_end():
    _, logger = fit_scripted(total=24, learning_starts=100)
    ended = {step: row for step, row in logger.rows if "train/episode_vlm_return" in row}
    # Episodes end after 6 steps per env, i.e. in the batch that reaches env step 2 * 6 = 12.
    assert sorted(ended) == [16, 24]
    # Env 0 earns 1 per step and env 1 earns 2 per step: a mean return of 1.5 * 6.
    assert ended[16]["train/episode_vlm_return"] == pytest.approx(9.0)
    assert ended[16]["train/episode_gt_return"] == pytest.approx(9.0)  # no VLM: same reward
    assert ended[16]["train/episode_length"] == 6.0


def test_replay_buffer_receives_every_step_with_gt_reward_kept():
    module, _ = fit_scripted(total=24, learning_starts=100)
    stored = module.data.replay_buffer[:]
    assert len(stored) == 24
    assert GT_REWARD not in stored["next"].keys()  # replay keeps what SAC learns from only
    assert torch.equal(stored["next", "reward"].unique(), torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("spec", [OneHot(2), Bounded(-1.0, 1.0, shape=(2,))],
                         ids=["discrete", "box"])
def test_loss_impl_changes_how_updates_compute_not_what_is_trained_or_saved(spec):
    """Both implementations train the TorchRL loss's tensors and save the same state."""
    state = {}
    for impl in ("fast", "torchrl"):
        cfg = Config()
        cfg.agent.loss_impl = impl
        module = SACModule(cfg, OBS, spec)
        state[impl] = list(module.state_dict())
        assert (module.update_loss is module.loss_module) == (impl == "torchrl")
        optimized = {id(p) for group in module.configure_optimizers().param_groups
                     for p in group["params"]}
        assert optimized == {id(p) for p in module.loss_module.parameters()}
    assert state["fast"] == state["torchrl"]
    if isinstance(spec, OneHot):  # as recorded from the loop before loss_impl existed
        recorded = json.loads((ROOT / "tests" / "data" / "sequential_quickstart.json")
                              .read_text())["final_loss_module_checksum_names"]
        assert [k.removeprefix("loss_module.") for k in state["fast"]
                if k.startswith("loss_module.")] == recorded


def test_a_module_without_its_data_side_refuses_to_train():
    """The wiring hands the data side over before fit (vlmrm.run.build.attach_data)."""
    module = SACModule(Config(), OBS, OneHot(2))
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False,
                        enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, use_distributed_sampler=False)
    with pytest.raises(RuntimeError, match="attach_data"):
        trainer.fit(module)
