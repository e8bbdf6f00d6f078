"""The ``mix`` transform: state terms (the env's reward, its info keys) added to the VLM
reward where a batch is scored, the VLM part kept, and both returns logged."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import CONFIGS, fit_run, scalars
from vlmrm.cli import main
from vlmrm.config import load_config
from vlmrm.errors import ConfigError
from vlmrm.keys import GT_REWARD, NEXT, PIXELS, REWARD, SUCCESS, VLM_REWARD
from vlmrm.reward.mix import Mix
from vlmrm.reward.seam import RewardModel, Scorer

QUICKSTART = CONFIGS / "quickstart.yaml"  # the bundled demo model: loads in a second
TOY = "vlmrm_toy_envs:ToyReach-v0"  # reports info["distance"] (= -reward) every step


def mix_override(terms: str, before: str = "goal_baseline") -> str:
    return f"reward.transform=[{before}, {{name: mix, terms: {terms}}}]"


class Redness(RewardModel):
    """A one-frame model of the seam: the mean red level of the frame."""

    def score(self, windows: torch.Tensor) -> torch.Tensor:
        return windows[..., -1, :, :, 0].float().mean(dim=(-2, -1)) / 255


def rollout(cfg, steps: int, **kwargs):
    from vlmrm.envs.factory import SeedPurpose, env_for

    env = env_for(cfg, SeedPurpose.TRAIN, num_envs=2, **kwargs)
    try:
        return env.rollout(steps, break_when_any_done=False)
    finally:
        env.close()


@pytest.fixture(scope="module")
def cartpole():
    """The demo model and a real [2 envs, 24 steps] batch of vlmrm/CartPole-v0."""
    from vlmrm.reward.model import input_size
    from vlmrm.run.build import make_mix, make_reward_model

    cfg = load_config(QUICKSTART, [mix_override("{gt_reward: 0.25, is_success: -0.5}")])
    model = make_reward_model(cfg, "cpu")
    return model, make_mix(cfg), rollout(cfg, 24, render_size=input_size(model))


def test_mix_adds_exactly_w_times_gt_and_the_info_term(cartpole):
    model, mix, batch = cartpole
    assert mix.terms == {GT_REWARD: 0.25, SUCCESS: -0.5}
    gt, success = batch[NEXT, REWARD].clone(), batch[NEXT, SUCCESS].clone()
    plain = Scorer(model).score(batch.clone())[NEXT]
    mixed = Scorer(model, mix).score(batch.clone())[NEXT]
    expected = plain[REWARD] + 0.25 * gt + (-0.5) * success.float().reshape(gt.shape)
    assert torch.equal(mixed[REWARD], expected)
    assert torch.equal(mixed[VLM_REWARD], plain[REWARD]) and torch.equal(mixed[GT_REWARD], gt)
    assert not torch.equal(mixed[REWARD], plain[REWARD]) and VLM_REWARD not in plain.keys()


def test_the_streamed_path_mixes_the_same_way(cartpole):
    model, mix, batch = cartpole
    frames = batch[NEXT, PIXELS]
    embeddings = model.encode_images(frames.reshape(-1, *frames.shape[-3:]))
    gt = batch[NEXT, REWARD].clone()
    plain = Scorer(model).score_embeddings(batch.clone(), embeddings)[NEXT]
    mixed = Scorer(model, Mix({GT_REWARD: 0.25})).score_embeddings(batch.clone(), embeddings)
    assert torch.equal(mixed[NEXT, REWARD], plain[REWARD] + 0.25 * gt)


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_an_info_key_reaches_the_batch_and_is_mixed(parallel):
    cfg = load_config(QUICKSTART, [f"env.id={TOY}", f"env.parallel={str(parallel).lower()}",
                                   mix_override("{distance: 2.0}")])
    batch = rollout(cfg, 12)
    distance = batch[NEXT, "distance"]
    assert distance.dtype == torch.float32 and distance.shape == (2, 12)
    # The toy env pays minus the distance it reports: the info value arrived per env, per step.
    assert torch.equal(distance, -batch[NEXT, REWARD].reshape(2, 12))
    red = Redness()
    plain = Scorer(red).score(batch.clone())[NEXT, REWARD]
    mixed = Scorer(red, Mix({"distance": 2.0})).score(batch.clone())[NEXT, REWARD]
    assert torch.equal(mixed, plain + 2.0 * distance.reshape(plain.shape))


def test_an_info_key_the_env_lacks_names_the_keys_it_has():
    from vlmrm.run.build import make_module

    cfg = load_config(QUICKSTART, [f"env.id={TOY}", mix_override("{speed: 1}")])
    with pytest.raises(ConfigError) as err:
        make_module(cfg)  # before any env worker or collector starts
    message = str(err.value)
    assert "'speed' is not a key of" in message and "['distance']" in message
    assert "\n" not in message


@pytest.mark.parametrize("override, message", [
    (mix_override("{gt_reward: .inf}"), "terms.gt_reward=inf must be a finite number"),
    (mix_override("{reward: 1}"), "term 'reward' must be gt_reward or an info key"),
    (mix_override("{}"), "terms={} must be a non-empty mapping"),
    ("reward.transform=[goal_baseline, {name: mix, terms: {gt_reward: 1}}, running_norm]",
     "reward.transform[1]: 'mix' must be the last item"),
    ("reward.transform=[{name: mix, terms: {gt_reward: 1}}]",
     "the chain must start with one embedding formula"),
    ((mix_override("{gt_reward: 1}"), "reward.backend=ground_truth"),
     "reward.backend=ground_truth has no VLM reward"),
])
def test_a_bad_mix_is_one_error_and_exit_2(override, message, tmp_path, capsys):
    overrides = [override] if isinstance(override, str) else list(override)
    code = main(["fit", "--config", str(QUICKSTART), f"logging.output_dir={tmp_path}/runs",
                 *overrides])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "runs").exists()


def test_fit_help_lists_mix(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "mix(terms=required)  -- reward + sum of weight * term" in capsys.readouterr().out


def test_running_norm_before_mix_keeps_its_state(cartpole):
    """mix is stateless: the chain's running statistics save and restore as without it."""
    from vlmrm.run.build import make_reward_model

    _, _, batch = cartpole
    frames = batch[NEXT, PIXELS].reshape(-1, *batch[NEXT, PIXELS].shape[-3:])
    models = [make_reward_model(load_config(QUICKSTART, [o]), "cpu") for o in (
        mix_override("{gt_reward: 1}", before="goal_baseline, running_norm"),
        "reward.transform=[goal_baseline, running_norm]")]
    for model in models:
        model.update_stats = True
        model(frames)
    with_mix, without = (m.state_dict() for m in models)
    assert with_mix.keys() == without.keys() and with_mix  # running_norm has statistics
    assert all(torch.equal(torch.as_tensor(with_mix[k]), torch.as_tensor(without[k]))
               for k in with_mix)
    fresh = make_reward_model(load_config(QUICKSTART, [mix_override(
        "{gt_reward: 1}", before="goal_baseline, running_norm")]), "cpu")
    fresh.load_state_dict(with_mix)
    with models[0].frozen(), fresh.frozen():
        assert torch.equal(fresh(frames), models[0](frames))


def test_fit_logs_the_mixed_and_the_vlm_return(tiny_openclip, tmp_path):
    run = fit_run(tmp_path, "cartpole.yaml", *tiny_openclip.overrides(),
                  mix_override("{gt_reward: 0.5}"), "agent.total_env_steps=160",
                  "agent.learning_starts=64", "env.episode_length=40", "agent.eval_every=160",
                  "agent.eval_episodes=1", "agent.hidden_sizes=[32,32]", "agent.batch_size=32")
    tags = {k: dict(v) for k, v in scalars(run).items()}
    mixed, vlm = tags["train/episode_mixed_return"], tags["train/episode_vlm_return"]
    gt = tags["train/episode_gt_return"]
    assert mixed.keys() == vlm.keys() == gt.keys() and len(gt) >= 2
    for step in gt:  # the paper's CartPole pays 1 per upright step: gt is not zero
        assert mixed[step] - vlm[step] == pytest.approx(0.5 * gt[step], abs=1e-4)
    ev = {k: tags[f"eval/{k}"][160] for k in ("mixed_return", "vlm_return", "gt_return")}
    assert ev["mixed_return"] - ev["vlm_return"] == pytest.approx(0.5 * ev["gt_return"],
                                                                  abs=1e-4)


def test_the_episode_tracker_resumes_the_mixed_sums():
    from vlmrm.collect.pipeline import EpisodeTracker

    def batch(vlm, mixed, done):
        from tensordict import TensorDict
        n = len(vlm)
        nxt = {REWARD: torch.tensor(mixed).view(n, 1), VLM_REWARD: torch.tensor(vlm).view(n, 1),
               GT_REWARD: torch.ones(n, 1), "done": torch.tensor(done).view(n, 1)}
        return TensorDict({NEXT: TensorDict(nxt, [n, 1])}, [n, 1])

    tracker = EpisodeTracker(2)
    tracker.update(batch([1.0, 2.0], [1.5, 2.5], [False, False]))
    resumed = EpisodeTracker(2)
    resumed.load_state_dict(tracker.state_dict())
    out = resumed.update(batch([3.0, 4.0], [3.5, 4.5], [True, False]))
    assert out["vlm_return"] == [4.0] and out["mixed_return"] == [5.0]
    old = {k: v for k, v in tracker.state_dict().items() if k != "mixed"}  # before mix existed
    EpisodeTracker(2).load_state_dict(old)


def test_a_config_with_a_mix_saves_and_reloads_as_itself(tmp_path):
    from vlmrm.config.load import to_yaml
    from vlmrm.run.resume import check_changes

    cfg = load_config(QUICKSTART, [mix_override("{gt_reward: 0.1, is_success: 2}")])
    assert cfg.reward.transform[-1] == {"name": "mix",
                                        "terms": {"gt_reward": 0.1, "is_success": 2.0}}
    saved = tmp_path / "config.yaml"  # what a run directory keeps, and resume reads
    saved.write_text(to_yaml(cfg))
    again = load_config(saved)
    assert again == cfg
    check_changes(again, cfg)
