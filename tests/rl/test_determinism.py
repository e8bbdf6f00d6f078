"""Same config and seed, same run, bit for bit, with several envs collected at once."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import CONFIGS, QUIET
from tests.rl.test_sequential_reference import Recorder
from vlmrm.commands.fit import fit
from vlmrm.config import load_config
from vlmrm.sac.update import replay_seed

#: The quick start (demo VLM reward) with two serial envs, kept short, on the fast update
#: (replay minibatches drawn from the rank's own generator, seeded from the config's seed).
TWO_ENVS = (*QUIET, "agent.loss_impl=fast", "env.num_envs=2", "agent.total_env_steps=256", "agent.learning_starts=64",
            "agent.gradient_steps=4", "agent.hidden_sizes=[32,32]", "agent.batch_size=32",
            "agent.eval_every=0", "reward.batch_size=16")


class GeneratorRecorder(Recorder):
    """Also keeps the replay generator's final state (it moved: the fast path drew from it)
    and whether frames were scored while being collected (streamed)."""

    replay_generator_state: torch.Tensor | None = None
    streamed: bool | None = None

    def on_train_end(self, trainer, module) -> None:
        super().on_train_end(trainer, module)
        self.replay_generator_state = module.replay_generator.get_state()
        self.streamed = module.data.batches.stream is not None


def _run(tmp_path, name: str, *extra: str) -> GeneratorRecorder:
    cfg = load_config(CONFIGS / "quickstart.yaml", [*TWO_ENVS, *extra,
                                                    f"logging.output_dir={tmp_path}",
                                                    f"logging.run_name={name}"])
    recorder = GeneratorRecorder()
    fit(cfg, callbacks=[recorder])
    return recorder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs by (stream_frames, collector, which): the process-collected streamed run that the
    thread-collected one must equal is the first of the two the "streamed" case compares;
    both cases only read it."""
    done: dict[tuple[int, str, str], GeneratorRecorder] = {}

    def get(stream_frames: int, collector: str, which: str) -> GeneratorRecorder:
        key = (stream_frames, collector, which)
        if key not in done:
            done[key] = _run(tmp_path_factory.mktemp("determinism"), which,
                             f"reward.stream_frames={stream_frames}",
                             f"agent.collector={collector}")
        return done[key]

    return get


@pytest.mark.parametrize(("stream_frames", "first", "second"), [
    (16, "process", "process"), (4, "process", "process"), (4, "thread", "process")],
    ids=["scored-after", "streamed", "streamed-thread-vs-process"])
def test_two_serial_envs_same_seed_same_rewards_actions_and_losses(runs, stream_frames,
                                                                   first, second):
    """Two runs of one config; in the last case one collects on a thread of the training
    process and the other in a process of its own, and they must still agree bit for bit."""
    if first == second:
        first, second = runs(stream_frames, first, "a"), runs(stream_frames, second, "b")
    else:
        first, second = runs(stream_frames, first, "a"), runs(stream_frames, second, "a")
    # 16 frames are a whole batch of 2 envs x 8 steps; 4 are 2 steps, scored in 4 passes.
    assert first.streamed == second.streamed == (stream_frames == 4)
    assert len(first.replay) == 256
    for key in first.replay.keys(True, True):
        assert torch.equal(first.replay[key], second.replay[key]), f"replay {key} differs"
    rewards = first.replay["next", "reward"]
    assert rewards.unique().numel() > 100  # VLM rewards, not the env's constant reward
    assert len(first.losses) == len(second.losses) == 4 * (256 - 64) // 16
    for ours, theirs in zip(first.losses, second.losses, strict=True):
        for key in ours.keys():
            assert torch.equal(ours[key], theirs[key]), f"{key} differs"
    for key, value in first.actor.items():
        assert torch.equal(value, second.actor[key]), f"final actor {key} differs"
    seeded = torch.Generator().manual_seed(replay_seed(0, 0)).get_state()
    assert not torch.equal(first.replay_generator_state, seeded)  # it drew the minibatches
    assert torch.equal(first.replay_generator_state, second.replay_generator_state)
