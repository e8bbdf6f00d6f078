"""A video reward model (the tiny X-CLIP) in the pipeline: each step's reward is the score of
that env's and episode's last frames, across batch ends and resets; a run stopped by SIGTERM
and resumed equals the straight run; `vlmrm fit` trains on its rewards end to end."""

from __future__ import annotations

import pytest
import torch

from tests.backends.fixtures import XCLIP_FRAMES, build_xclip
from tests.helpers import CONFIGS, fit_run, scalars
from tests.reward.test_seam import RUN, TOTAL
from tests.rl.test_resume import FinalState, SigtermAt
from vlmrm.collect.loop import StepLoop
from vlmrm.commands.fit import fit
from vlmrm.config import load_config
from vlmrm.envs.factory import make_env
from vlmrm.keys import DONE, GT_REWARD, NEXT, PIXELS, REWARD
from vlmrm.reward.seam import Scorer, score_episode
from vlmrm.run.build import make_reward_model
from vlmrm.run.resume import plan_resume
from vlmrm.run.runstate import STATE
from vlmrm.sac.agent import make_agent
from vlmrm.sac.exploration import ExplorationSampler, actor_network

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def xclip(tmp_path_factory) -> list[str]:
    """Overrides that make the reward the tiny X-CLIP saved in a directory."""
    root = tmp_path_factory.mktemp("xclip")
    with torch.no_grad():
        build_xclip(root)
    return ["reward.backend=xclip", f"reward.model={root}"]


def _episodes(done: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) step ranges of one env's episodes, the last possibly unfinished."""
    ends = [int(t) + 1 for t in torch.nonzero(done).flatten()]
    starts = [0, *ends]
    return [(s, e) for s, e in zip(starts, [*ends, len(done)], strict=True) if e > s]


def test_each_reward_scores_the_last_frames_of_its_own_env_and_episode(xclip):
    """2 CartPole envs, 6-step episodes, batches of 4 steps: episodes end mid-batch and the
    next one starts in a later batch. Every reward the Scorer writes equals the model's score
    of that step's window within its episode (score_episode: padded with the episode's
    first frame), and the window matters (a still frame scores otherwise)."""
    cfg = load_config(CONFIGS / "quickstart.yaml", [*xclip, "env.num_envs=2",
                                                    "env.episode_length=6"])
    model = make_reward_model(cfg)
    assert model.frames_needed == XCLIP_FRAMES
    env = make_env(cfg.env, model.image_size, from_pixels=True, seed=3)
    actor, _ = make_agent(4, env.action_spec_unbatched, [8])
    sampler = ExplorationSampler(actor_network(actor), env.action_spec_unbatched, cfg.agent,
                                 torch.Generator().manual_seed(0))
    loop, scorer = StepLoop(env, sampler, model.resize_frames), Scorer(model)
    frames, done, rewards = [], [], []
    for _ in range(4):
        batch = loop.rollout(4, random=True)
        frames.append(batch[NEXT, PIXELS].clone())
        done.append(batch[NEXT, DONE].reshape(2, 4))
        gt = batch[NEXT, REWARD].clone()
        scored = scorer.score(batch)
        assert torch.equal(scored[NEXT, GT_REWARD], gt)  # the env's own reward, kept aside
        rewards.append(scored[NEXT, REWARD].reshape(2, 4))
    env.close()
    frames, done, rewards = torch.cat(frames, 1), torch.cat(done, 1), torch.cat(rewards, 1)
    assert frames.shape[-3:] == (32, 32, 3)
    for e in range(2):
        episodes = _episodes(done[e])
        assert [s for s, _ in episodes] == [0, 6, 12]
        for start, end in episodes:
            expected = score_episode(model, frames[e, start:end])
            # Other batch compositions may round differently: 1e-6, 10x below the effects
            # checked next (measured here: equal to the bit).
            torch.testing.assert_close(rewards[e, start:end], expected, atol=1e-6, rtol=0)
    # The window matters: a still frame, or a window running on across a reset, scores
    # otherwise (measured: up to 1.6e-4 and 1e-4 apart).
    still = model.score(frames.unsqueeze(-4).expand(-1, -1, XCLIP_FRAMES, -1, -1, -1))
    assert (still - rewards).abs().max() > 1e-5
    across = torch.stack([score_episode(model, f) for f in frames])
    assert (across - rewards)[:, [6, 12]].abs().max() > 1e-5


@pytest.mark.slow  # three short runs of `vlmrm fit`
def test_a_video_reward_run_resumes_exactly_after_sigterm(xclip, tmp_path):
    """The seam's toy two-frame resume test, through the real config path instead: CartPole
    rewarded by the tiny X-CLIP (4-frame windows, 50-step episodes ending inside 8-step
    batches). Stopped by SIGTERM and resumed, the run equals the straight one bit for bit:
    the frame history is saved with the data state."""
    overrides = [*RUN, *xclip, f"logging.output_dir={tmp_path}"]

    def run(name: str, callbacks):
        cfg = load_config(CONFIGS / "quickstart.yaml", [*overrides, f"logging.run_name={name}"])
        return fit(cfg, callbacks=callbacks)

    straight = FinalState()
    run("straight", [straight])
    stopped = run("split", [SigtermAt(TOTAL // 2)])
    assert stopped.interrupted and TOTAL // 2 <= stopped.env_steps < TOTAL
    saved = torch.load(stopped.run_dir / "checkpoints" / f"step-{stopped.env_steps}.data-r0"
                       / STATE, weights_only=True)
    history = saved["data"]["frame_history"]["frames"]
    assert history.shape == (2, XCLIP_FRAMES - 1, 32, 32, 3) and history.any()

    resumed = FinalState()
    result = fit(None, resume=plan_resume(str(stopped.run_dir), None, []), callbacks=[resumed])
    assert not result.interrupted and resumed.env_steps == straight.env_steps == TOTAL
    rewards = straight.replay[NEXT, REWARD]
    assert ((rewards != 0) & (rewards != 1)).all()  # the model's, not the env's 0 or 1
    resumed.assert_equals(straight)


def test_cartpole_fit_trains_on_video_rewards_end_to_end(xclip, tmp_path):
    """`vlmrm fit --config configs/cartpole.yaml` with the tiny X-CLIP: the run finishes and
    its logged returns are the model's, not CartPole's 1 per step."""
    run = fit_run(tmp_path, "cartpole.yaml", *xclip, "agent.total_env_steps=240",
                  "agent.learning_starts=64", "agent.eval_every=240", "agent.eval_episodes=1",
                  "agent.hidden_sizes=[32,32]", "agent.batch_size=32", "env.episode_length=40",
                  "logging.checkpoint_every=240")
    tags = scalars(run)
    assert max(step for step, _ in tags["env_steps"]) == 240
    gt, vlm = dict(tags["train/episode_gt_return"]), dict(tags["train/episode_vlm_return"])
    assert gt and any(abs(gt[s] - vlm[s]) > 1e-3 for s in gt)
    assert "eval/vlm_return" in tags
