"""env.parallel workers (Gymnasium AsyncVectorEnv): the episodes of env.parallel=false bit
for bit, no torch in the workers, their state and errors, and their memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.helpers import CONFIGS, ROOT
from tests.rl.test_envstate import EPISODE, resume_and_compare
from vlmrm.config import load_config
from vlmrm.config.schema import EnvConfig
from vlmrm.envs.envstate import env_state, load_env_state
from vlmrm.envs.factory import make_env, vector_envs

sys.path.insert(0, str(ROOT / "benchmarks"))
from throughput_stages import worker_memory  # noqa: E402

#: Acceptance: the humanoid preset's 32 workers, stepping and rendering, hold at most this.
WORKERS_PSS_LIMIT_MB = 6000


def rollout(env, steps: int):
    torch.manual_seed(0)
    td, out = env.reset(), []
    for _ in range(steps):
        td["action"] = env.action_spec.rand()
        step, td = env.step_and_maybe_reset(td)
        out.append(step.clone())
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("env_id, num_envs, size", [
    ("vlmrm/CartPole-v0", 2, None), ("vlmrm/Humanoid-v0", 2, 64)])
def test_parallel_envs_run_the_serial_episodes_bit_for_bit(env_id, num_envs, size):
    runs = {}
    for parallel in (False, True):
        cfg = EnvConfig(id=env_id, num_envs=num_envs, parallel=parallel, episode_length=5)
        env = make_env(cfg, size, from_pixels=True, seed=7)
        assert (vector_envs(env) is not None) == parallel
        try:
            runs[parallel] = rollout(env, 12)
        finally:
            env.close()
    serial, parallel = runs[False], runs[True]
    assert serial["next", "done"].sum() == 2 * num_envs  # two resets per env compared
    assert set(serial.keys(True, True)) == set(parallel.keys(True, True))
    for key in serial.keys(True, True):
        assert serial[key].dtype == parallel[key].dtype, key
        assert torch.equal(serial[key], parallel[key]), f"{key} differs"


def test_parallel_state_resumes_a_serial_env_exactly():
    # The other direction (a serial capture into workers) is test_envstate's.
    serial = EnvConfig(id="vlmrm/CartPole-v0", episode_length=EPISODE, num_envs=2)
    parallel = EnvConfig(id="vlmrm/CartPole-v0", episode_length=EPISODE, num_envs=2,
                         parallel=True)
    resume_and_compare(parallel, fresh_cfg=serial)


def test_a_state_that_does_not_fit_is_refused_and_the_workers_live_on():
    pendulum = make_env(EnvConfig(id="Pendulum-v1"), None, from_pixels=False, seed=0)
    env = make_env(EnvConfig(id="vlmrm/CartPole-v0", num_envs=2, parallel=True), None,
                   from_pixels=False, seed=0)
    try:
        pendulum.reset()
        other = env_state(pendulum)
        state = {**other, "envs": other["envs"] * 2}
        with pytest.raises(ValueError, match="worker 0: env state of 'Pendulum-v1'"):
            load_env_state(env, state)
        td = env.reset()
        td["action"] = env.action_spec.rand()
        env.step(td)  # every worker still answers
        assert len(env_state(env)["envs"]) == 2
    finally:
        pendulum.close()
        env.close()


#: A training script as users write them: torch imported at the top, an env id registered
#: only here. Spawned workers re-import a script's top unless it is kept from them.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    import gymnasium as gym
    import torch
    from vlmrm.config.schema import EnvConfig
    from vlmrm.envs.factory import make_env, vector_envs

    gym.register("ScriptOnly-v0", "gymnasium.envs.classic_control.cartpole:CartPoleEnv",
                 max_episode_steps=5)

    if __name__ == "__main__":
        env = make_env(EnvConfig(id="ScriptOnly-v0", num_envs=2, parallel=True), None,
                       from_pixels=True, seed=0)
        td = env.reset()
        for _ in range(7):
            _, td = env.step_and_maybe_reset(env.rand_action(td))
        facts = vector_envs(env).process_facts()
        env.close()
        print(json.dumps({"facts": facts, "main_file": "__file__" in globals(),
                          "omp": os.environ.get("OMP_NUM_THREADS"),
                          "lp": os.environ.get("LP_NUM_THREADS")}))
""")


def test_workers_import_no_torch_and_run_one_thread_each(tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("OMP_NUM_THREADS", "LP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(out["facts"]) == 2
    for fact in out["facts"]:
        assert fact["heavy_modules"] == []
        assert fact["vars"]["LP_NUM_THREADS"] == "1" and fact["vars"]["OMP_NUM_THREADS"] == "1"
        assert fact["vars"]["MUJOCO_GL"] == "egl"  # set by vlmrm's import in the parent
    # The script's own process is as it was: its thread settings and its __main__.
    assert out["omp"] is None and out["lp"] is None and out["main_file"]
    assert "leaked" not in done.stderr  # no semaphore or shared memory left behind


@pytest.mark.slow
def test_the_humanoid_presets_32_workers_fit_in_6_gb():
    """Acceptance: 32 humanoid workers, stepping and rendering at the reward model's input
    size, hold at most 6 GB together (each imported torch and TorchRL before: ~540 MB)."""
    cfg = load_config(CONFIGS / "humanoid_lotus.yaml")
    assert cfg.env.num_envs == 32 and cfg.env.parallel
    env = make_env(cfg.env, (224, 224), from_pixels=True, seed=0)
    try:
        td = env.reset()
        for _ in range(3):
            step, td = env.step_and_maybe_reset(env.rand_action(td))
        assert step["next", "pixels"].shape == (32, 224, 224, 3)
        assert step["next", "pixels"].float().std() > 0  # rendered, not blank
        memory = worker_memory(env)
    finally:
        env.close()
    assert memory["workers"] == 32 and memory["heavy_modules"] == []
    assert 0 < memory["pss_mb_total"] <= WORKERS_PSS_LIMIT_MB, memory
