"""running_norm's statistics in a real run: training batches only, checkpointed, restored by
`play`'s loader and by a resumed fit."""

import lightning as L
import torch

from tests.helpers import CONFIGS, QUIET
from vlmrm.commands.fit import fit
from vlmrm.commands.play import load_agent
from vlmrm.config import load_config
from vlmrm.run.build import attach_data, make_module, make_reward_model, make_trainer

SMALL = ["agent.hidden_sizes=[16]", "agent.batch_size=16", "agent.learning_starts=32",
         "agent.eval_every=32", "agent.eval_episodes=1", "env.episode_length=20",
         "logging.checkpoint_every=32", "reward.transform=[goal_baseline, running_norm]"]


def test_statistics_count_training_frames_only_and_survive_checkpoints(tmp_path):
    cfg = load_config(CONFIGS / "quickstart.yaml", [
        *QUIET, *SMALL, "agent.total_env_steps=64", f"logging.output_dir={tmp_path}",
        "logging.run_name=run"])
    fit(cfg)
    ckpts = tmp_path / "run" / "checkpoints"
    state = torch.load(ckpts / "last.ckpt", weights_only=True)["vlmrm"]["reward_formula"]
    # 64 training frames scored; the two evaluations (2 x 20 frames) left the statistics alone.
    assert state["1.count"].item() == 64
    assert torch.load(ckpts / "step-32.ckpt", weights_only=True)[
        "vlmrm"]["reward_formula"]["1.count"].item() == 32

    _, _, reward_model = load_agent(ckpts / "last.ckpt")
    norm = reward_model.formula[1]
    assert norm.count.item() == 64 and torch.equal(norm.mean, state["1.mean"])

    # Resuming from step 32 restores the statistics, then adds the remaining 32 frames.
    resumed = load_config(CONFIGS / "quickstart.yaml", [
        *QUIET, *SMALL, "agent.total_env_steps=64", f"logging.output_dir={tmp_path}"])
    module, at_start = make_module(resumed), CountAtStart()
    trainer = make_trainer(resumed, tmp_path / "resumed", [at_start])
    attach_data(module, make_reward_model(resumed), trainer)
    trainer.fit(module, ckpt_path=ckpts / "step-32.ckpt")
    assert at_start.count == 32 and module.env_steps == 64
    assert module.data.scorer.model.formula[1].count.item() == 64


class CountAtStart(L.Callback):
    """running_norm's count when training (re)starts, after the module has set up its data."""

    count = None

    def on_train_start(self, trainer, module) -> None:
        self.count = module.data.scorer.model.formula[1].count.item()
