"""Streamed scoring (vlmrm.collect.stream): passes cut at fixed step counts, embeddings in the
rollout's layout, and the same rewards as scoring the complete batch."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import CONFIGS
from vlmrm.collect.loop import StepLoop
from vlmrm.collect.stream import FrameStream, steps_per_pass
from vlmrm.config import load_config
from vlmrm.envs.factory import make_env
from vlmrm.keys import GT_REWARD, NEXT, PIXELS, REWARD
from vlmrm.reward.seam import Scorer
from vlmrm.run.build import make_reward_model, make_stream
from vlmrm.sac.agent import make_agent
from vlmrm.sac.exploration import ExplorationSampler, actor_network


def marked_frames(step: int, num_envs: int | None) -> torch.Tensor:
    """One step's frames; pixel (0, 0) holds (env, step) so the embedding says which it is."""
    envs = 1 if num_envs is None else num_envs
    frames = torch.zeros(envs, 4, 4, 3, dtype=torch.uint8)
    frames[:, 0, 0, 0] = torch.arange(envs, dtype=torch.uint8)
    frames[:, 0, 0, 1] = step
    return frames[0] if num_envs is None else frames


class PassRecorder:
    """An encoder reading back the (env, step) marks; it records each pass's size."""

    def __init__(self, fail_on_pass: int | None = None) -> None:
        self.sizes: list[int] = []
        self.fail_on_pass = fail_on_pass

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(frames))
        if self.fail_on_pass == len(self.sizes):
            raise RuntimeError("encoder failed")
        return frames[:, 0, 0, :2].float()


@pytest.mark.parametrize("num_envs", [2, None], ids=["2-envs", "single-env"])
def test_passes_are_cut_every_k_steps_and_embeddings_keep_the_rollout_layout(num_envs):
    encoder = PassRecorder()
    stream = FrameStream(encoder, steps=3)
    stream.begin()
    for t in range(7):
        stream.add(marked_frames(t, num_envs))
    embeddings, seconds = stream.finish()
    envs = num_envs or 1
    assert encoder.sizes == [3 * envs, 3 * envs, envs]  # the rest goes last
    expected_env = torch.arange(envs).float()[:, None].expand(envs, 7)
    expected_step = torch.arange(7).float().expand(envs, 7)
    if num_envs is None:
        assert embeddings.shape == (7, 2)  # [T, D], as a single env's rollout is [T]
        expected_env, expected_step = expected_env[0], expected_step[0]
    else:
        assert embeddings.shape == (2, 7, 2)  # [env, T, D]
    assert torch.equal(embeddings[..., 0], expected_env)
    assert torch.equal(embeddings[..., 1], expected_step)
    assert seconds > 0
    stream.close()


def test_an_encoder_error_reaches_finish_and_the_next_rollout_starts_clean():
    stream = FrameStream(PassRecorder(fail_on_pass=2), steps=1)
    stream.begin()
    for t in range(3):
        stream.add(marked_frames(t, 2))
    with pytest.raises(RuntimeError, match="encoder failed"):
        stream.finish()
    # A rollout that failed half-way leaves passes behind: begin() drops them, errors and all.
    stream.encode = PassRecorder(fail_on_pass=1)
    stream.add(marked_frames(0, 2))
    stream.encode = PassRecorder()
    stream.begin()
    stream.add(marked_frames(5, 2))
    embeddings, _ = stream.finish()
    assert embeddings[..., 1].tolist() == [[5.0], [5.0]]
    with pytest.raises(RuntimeError, match="no frames"):
        stream.finish()
    stream.close()


def test_pass_length_rounds_to_whole_steps_within_the_encoder_batch():
    assert steps_per_pass(16, 800, 2) == 8
    assert steps_per_pass(16, 6, 2) == 3  # never more frames than reward.batch_size
    assert steps_per_pass(16, 800, 32) == 1  # at least one step, whatever the env count
    with pytest.raises(ValueError, match="at least one step"):
        FrameStream(PassRecorder(), steps=0)


def _cfg(*overrides: str):
    return load_config(CONFIGS / "quickstart.yaml", ["env.num_envs=2", "agent.train_freq=10",
                                                     *overrides])


@pytest.mark.parametrize("overrides", [
    ["agent.overlap=false"],            # the sequential loop scores complete batches
    ["reward.stream_frames=0"],         # switched off
    ["reward.stream_frames=20"],        # one pass is the whole batch (10 steps x 2 envs)
    ["reward.backend=ground_truth"],    # nothing to score
], ids=["sequential", "off", "one-pass", "ground-truth"])
def test_no_stream_where_a_batch_is_scored_in_one_go(overrides):
    cfg = _cfg(*overrides)
    assert make_stream(cfg, make_reward_model(cfg), 2) is None


def test_compiled_encoder_streams_full_batches_only():
    cfg = _cfg("reward.stream_frames=2", "reward.batch_size=8", "reward.compile=true")
    stream = make_stream(cfg, make_reward_model(cfg), 2)
    assert stream is not None and stream.steps == 4  # reward.batch_size frames, not 2
    stream.close()


def test_streamed_rewards_equal_the_complete_batch_scored_at_once():
    """A real rollout (2 CartPole envs, the demo model): rewards from the streamed passes and
    from one pass over the finished batch agree, and the transform writes them the same way."""
    cfg = _cfg("reward.stream_frames=4")
    model = make_reward_model(cfg)
    stream = make_stream(cfg, model, 2)
    assert stream is not None and stream.steps == 2
    env = make_env(cfg.env, model.image_size, from_pixels=True, seed=3)
    actor, _ = make_agent(4, env.action_spec_unbatched, [8])
    sampler = ExplorationSampler(actor_network(actor), env.action_spec_unbatched, cfg.agent,
                                 torch.Generator().manual_seed(0))
    stream.begin()
    batch = StepLoop(env, sampler).rollout(10, random=True, on_frames=stream.add)
    embeddings, _ = stream.finish()
    env.close()
    stream.close()
    assert embeddings.shape[:2] == (2, 10)

    scorer = Scorer(model)
    at_once = scorer.score(batch.clone())
    streamed = scorer.score_embeddings(batch.clone(), embeddings)
    torch.testing.assert_close(streamed[NEXT, REWARD], at_once[NEXT, REWARD],
                               rtol=0, atol=1e-6)
    assert torch.equal(streamed[NEXT, GT_REWARD], batch[NEXT, REWARD])
    assert PIXELS not in streamed[NEXT].keys()
    assert streamed[NEXT, REWARD].std() > 0  # real, varied rewards, not a constant
