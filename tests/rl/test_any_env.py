"""Any Gymnasium env trains, checkpoints and resumes: envs whose state vlmrm cannot capture
(outside vlmrm.envs.gymstate.LAYER_ATTRS) still write every checkpoint (step, end, SIGTERM),
their resumed runs finish with the episodes in progress restarted, and `vlmrm play` films
their agents. Spaces the networks cannot take are refused at start with exit code 2."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import CONFIGS, QUIET
from tests.rl.test_resume import SigtermAt
from vlmrm.cli import main
from vlmrm.commands.fit import fit
from vlmrm.commands.play import play
from vlmrm.config import load_config
from vlmrm.envs.envstate import RESTART_NOTE
from vlmrm.errors import ConfigError
from vlmrm.run.resume import plan_resume
from vlmrm.run.runstate import STATE

TOTAL, STOP = 320, 96
SMALL = (f"agent.total_env_steps={TOTAL}", "agent.learning_starts=64", "agent.train_freq=8",
         "agent.gradient_steps=1", "agent.batch_size=32", "agent.hidden_sizes=[32,32]",
         "agent.eval_every=0", "reward.backend=ground_truth", "env.episode_length=100",
         "logging.checkpoint_every=200", "logging.video_every=100", *QUIET)

ENVS = [
    # Classic control, discrete actions, two envs in one batch.
    pytest.param("Acrobot-v1", ["env.num_envs=2"], id="acrobot-2envs"),
    # Discrete, collected in a process of its own (its state crosses the pipe).
    pytest.param("MountainCar-v0", ["agent.collector=process"], id="mountaincar-process",
                 marks=pytest.mark.slow),
    # MuJoCo, continuous actions, early termination.
    pytest.param("InvertedPendulum-v5", [], id="invertedpendulum"),
    # A third-party env named the Gymnasium way: the module registers it when imported.
    pytest.param("vlmrm_toy_envs:ToyReach-v0", ["agent.overlap=false"], id="toy-module-id"),
]


@pytest.mark.parametrize("env_id,extra", ENVS)
def test_env_outside_the_capture_list_checkpoints_resumes_and_plays(env_id, extra, tmp_path,
                                                                     capsys):
    cfg = load_config(CONFIGS / "quickstart.yaml",
                      [*SMALL, *extra, f"env.id={env_id}", f"logging.output_dir={tmp_path}",
                       "logging.run_name=run"])
    stopped = fit(cfg, callbacks=[SigtermAt(STOP)])
    assert stopped.interrupted and STOP <= stopped.env_steps < TOTAL
    assert f"continue ({RESTART_NOTE})" in stopped.report()
    assert capsys.readouterr().out.count(RESTART_NOTE) == 1
    ckpts = stopped.run_dir / "checkpoints"
    assert (ckpts / "last.ckpt").is_file()
    saved = torch.load(ckpts / f"step-{stopped.env_steps}.data-r0" / STATE, weights_only=True)
    assert saved["data"]["collection"]["env"]["envs"] is None  # marked: episodes restart

    result = fit(None, resume=plan_resume(str(stopped.run_dir), None, []))
    assert not result.interrupted and result.env_steps == TOTAL
    assert capsys.readouterr().out.count(RESTART_NOTE) == 1
    assert len(list(ckpts.glob("step-2??.ckpt"))) == 1 and (ckpts / "last.ckpt").is_file()
    assert len(list((stopped.run_dir / "videos").glob("step-*.mp4"))) == 3  # every 100 steps

    video = tmp_path / "episode.mp4"
    summary = play(ckpts / "last.ckpt", video)
    assert video.stat().st_size > 0 and "gt_return" in summary


def _refused(capsys, *overrides: str) -> str:
    code = main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), *SMALL, *overrides])
    assert code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("kwargs,names", [
    ("{observation: image}", ["Box(0, 255, (64, 64, 3), uint8)", "image"]),
    ("{observation: dict}", ["Dict(", "FlattenObservation"]),
    ("{action: multi_discrete}", ["MultiDiscrete([3 3])", "ActionWrapper"]),
], ids=["image", "dict", "multi-discrete"])
def test_spaces_the_networks_cannot_take_are_refused_at_start(kwargs, names, capsys, tmp_path):
    err = _refused(capsys, "env.id=vlmrm_toy_envs:ToyReach-v0", f"env.kwargs={kwargs}",
                   f"logging.output_dir={tmp_path}")
    assert all(name in err for name in names), err
    assert "env.id=your_package.module:YourEnv-v0" in err
    assert not any(tmp_path.iterdir())  # refused before a run directory exists


def test_discrete_observations_are_one_hot(tmp_path):
    from vlmrm.envs.factory import make_base_env

    cfg = load_config(None, ["env.id=FrozenLake-v1", "reward.backend=ground_truth"])
    env = make_base_env(cfg.env, None, from_pixels=False, seed=0)
    obs = env.reset()["observation"]
    assert obs.shape == (16,) and obs.dtype == torch.float32
    assert obs.sum() == 1 and obs[0] == 1  # FrozenLake starts in state 0
    env.close()


def test_module_ids_missing_module_or_env_are_clear_config_errors():
    with pytest.raises(ConfigError, match="no module 'vlmrm_no_such_pkg' is installed"):
        load_config(None, ["env.id=vlmrm_no_such_pkg.envs:Reach-v0",
                           "reward.backend=ground_truth"])
    with pytest.raises(ConfigError, match="did not register 'Nope-v0'"):
        load_config(None, ["env.id=vlmrm_toy_envs:Nope-v0", "reward.backend=ground_truth"])
    with pytest.raises(ConfigError, match="is not a module name"):
        load_config(None, ["env.id=../evil:Reach-v0", "reward.backend=ground_truth"])
    assert load_config(None, ["env.id=vlmrm_toy_envs:ToyReach-v0",
                               "reward.backend=ground_truth"]).env.id.endswith("-v0")
