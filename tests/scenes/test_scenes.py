"""The paper's scenes: CartPole and MountainCar variants, the textured Humanoid and its camera."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from vlmrm.config import EnvConfig, load_config
from vlmrm.envs.factory import make_base_env, make_env, make_gym_env
from vlmrm.errors import ConfigError
from vlmrm.scenes.mjcf import PAPER_CAMERA, PAPER_CAMERA_NAME, TRACKING_CAMERA_NAME

UPRIGHT = 12 * 2 * math.pi / 360
GT = ["reward.backend=ground_truth"]  # no model: these tests are about the env


def cartpole(state) -> gym.Env:
    env = gym.make("vlmrm/CartPole-v0")
    env.reset(seed=0)
    env.unwrapped.state = np.array(state, dtype=np.float64)
    return env


def test_cartpole_frame_is_the_stock_render_of_the_surface():
    """vlmrm's one-copy read of the pygame surface gives the pixels of Gymnasium's own
    rgb_array read (a transposed copy of ``surfarray.pixels3d``), as a writable array."""
    import pygame

    env = gym.make("vlmrm/CartPole-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frames = []
    for _ in range(5):
        env.step(env.action_space.sample())
        ours = env.render()
        stock = np.transpose(np.array(pygame.surfarray.pixels3d(env.unwrapped.screen)),
                             axes=(1, 0, 2))
        assert ours.shape == (600, 600, 3) and ours.dtype == np.uint8 and ours.flags.writeable
        assert np.array_equal(ours, stock)
        frames.append(ours)
    assert env.unwrapped.render_mode == "rgb_array"
    assert not np.array_equal(frames[0], frames[-1])  # the cart and pole moved
    env.close()


def test_cartpole_angle_wraps_to_minus_pi_pi():
    env = cartpole([0.0, 0.0, math.pi - 0.01, 3.0])  # falling over the bottom, clockwise
    obs, *_ = env.step(1)
    assert -math.pi <= obs[2] < 0  # crossed +pi: wrapped to just above -pi
    assert obs[2] == pytest.approx(env.unwrapped.state[2])
    for _ in range(300):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert -math.pi <= obs[2] < math.pi and not terminated
        if truncated:
            break


def test_cartpole_cart_is_clipped_to_the_track_and_stops():
    env = cartpole([2.39, 5.0, 0.0, 0.0])
    obs, *_ = env.step(1)
    assert obs[0] == pytest.approx(2.4) and obs[1] == 0.0
    env = cartpole([-2.39, -5.0, 0.0, 0.0])
    obs, *_ = env.step(0)
    assert obs[0] == pytest.approx(-2.4) and obs[1] == 0.0


def test_cartpole_never_terminates_and_lasts_200_steps():
    env = gym.make("vlmrm/CartPole-v0")
    env.reset(seed=1)
    steps, upright = 0, 0
    while True:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        upright += reward
        assert not terminated and reward == float(info["is_success"])
        if truncated:
            break
    assert steps == 200
    assert upright < 120  # a random policy keeps the pole up only part of the time


@pytest.mark.parametrize("state, success", [
    ([0.0, 0.0, 0.0, 0.0], True),
    ([1.0, 2.0, UPRIGHT - 1e-3, -1.0], True),
    ([0.0, 0.0, -(UPRIGHT - 1e-3), 0.0], True),
    ([0.0, 0.0, UPRIGHT + 1e-3, 0.0], False),
    ([0.0, 0.0, math.pi - 0.05, 0.0], False),
    ([0.0, 0.0, 0.1 - 2 * math.pi, 0.0], True),  # an unwrapped upright angle
    ([2.5, 0.0, 0.0, 0.0], False),  # cart off the track
    ([-2.4, 0.0, 0.0, 0.0], True),  # at the end of the track
])
def test_cartpole_is_success_on_hand_set_states(state, success):
    env = cartpole(state)
    assert env.unwrapped.is_success() is success


def test_cartpole_step_reports_is_success_of_the_new_state():
    env = cartpole([0.0, 0.0, 0.0, 0.0])
    _, reward, _, _, info = env.step(0)
    assert info["is_success"] and reward == 1.0
    env = cartpole([0.0, 0.0, 1.0, 0.0])
    _, reward, _, _, info = env.step(0)
    assert not info["is_success"] and reward == 0.0


def mountaincar(position: float, velocity: float = 0.0, **kwargs) -> gym.Env:
    env = gym.make("vlmrm/MountainCarContinuous-v0", **kwargs)
    env.reset(seed=0)
    env.unwrapped.state = np.array([position, velocity], dtype=np.float32)
    return env


@pytest.mark.parametrize("position, success", [
    (0.45, True), (0.5, True), (0.6, True), (0.449, False), (-0.5, False), (-1.2, False)])
def test_mountaincar_is_success_at_the_flag(position, success):
    assert mountaincar(position).unwrapped.is_success() is success


def test_mountaincar_step_info_and_reset_info_carry_is_success():
    env = gym.make("vlmrm/MountainCarContinuous-v0")
    _, info = env.reset(seed=0)
    assert info["is_success"] == np.False_
    env.unwrapped.state = np.array([0.55, 0.02], dtype=np.float32)
    _, _, _, _, info = env.step(np.array([1.0], dtype=np.float32))
    assert info["is_success"]


def test_mountaincar_success_is_sticky_the_car_is_held_at_the_flag_and_reset_clears_it():
    env = mountaincar(0.44, 0.05)
    obs, _, terminated, _, info = env.step(np.array([1.0], dtype=np.float32))
    assert info["is_success"] and not terminated  # the stock env would end here
    assert obs[0] == pytest.approx(0.45) and obs[1] > 0  # held at the flag, velocity kept
    positions = []
    for _ in range(60):  # braking: the car rolls back down the hill
        obs, _, terminated, _, info = env.step(np.array([-1.0], dtype=np.float32))
        positions.append(obs[0])
        assert info["is_success"] and not terminated
    assert max(positions) <= 0.45 + 1e-6 and min(positions) < 0.3
    _, info = env.reset(seed=1)
    assert not info["is_success"] and not env.unwrapped.is_success()
    _, _, _, _, info = env.step(np.array([0.0], dtype=np.float32))
    assert not info["is_success"]


def test_mountaincar_swinging_policy_reaches_the_flag_and_never_passes_it():
    env = gym.make("vlmrm/MountainCarContinuous-v0")
    obs, _ = env.reset(seed=0)
    success = []
    for _ in range(300):
        action = np.array([1.0 if obs[1] >= 0 else -1.0], dtype=np.float32)  # pump energy
        obs, _, terminated, truncated, info = env.step(action)
        assert obs[0] <= 0.45 + 1e-6 and not terminated
        success.append(bool(info["is_success"]))
    first = success.index(True)
    assert first < 200 and all(success[first:])


def test_mountaincar_car_stays_in_the_frame_at_the_flag():
    def car_pixels(position: float) -> np.ndarray:
        env = mountaincar(position, render_mode="rgb_array", width=120, height=120)
        frame = env.render().astype(int)
        red = (frame[..., 0] > 150) & (frame[..., 1] < 80) & (frame[..., 2] < 80)
        return np.argwhere(red)

    valley, flag = car_pixels(-0.5), car_pixels(0.45)
    assert len(flag) > 0.8 * len(valley)  # the whole car is drawn
    assert flag[:, 1].max() < 119 and flag[:, 0].min() > 0  # not cut at the right or top


def test_mountaincar_textured_renders_at_the_asked_size_and_shows_the_car():
    env = gym.make("vlmrm/MountainCarContinuous-v0", render_mode="rgb_array", width=96,
                   height=80)
    env.reset(seed=0)
    frames = []
    for position in (-1.0, 0.5):
        env.unwrapped.state = np.array([position, 0.0], dtype=np.float32)
        frames.append(env.render().astype(int))
    assert frames[0].shape == (80, 96, 3)
    moved = np.abs(frames[0] - frames[1]).sum(-1) > 60
    cols = np.nonzero(moved.any(0))[0]
    assert cols.min() < 96 * 0.25 and cols.max() > 96 * 0.75  # car left, then right
    plain = gym.make("vlmrm/MountainCarContinuous-v0", render_mode="rgb_array", textured=False)
    plain.reset(seed=0)
    assert plain.render().shape == (600, 600, 3)  # stock picture, square


def test_is_success_reaches_the_torchrl_tensordict():
    env = make_base_env(EnvConfig(id="vlmrm/CartPole-v0"), None, from_pixels=False, seed=0)
    td = env.rollout(5)
    assert str(td["next", "is_success"].dtype) == "torch.bool"
    assert td["next", "is_success"].reshape(-1).float().eq(td["next", "reward"].reshape(-1)).all()


@pytest.mark.parametrize("textured", [True, False])
@pytest.mark.parametrize("camera", ["paper", "tracking", "stock"])
def test_humanoid_scene_loads_textured_and_plain(textured, camera):
    env = gym.make("vlmrm/Humanoid-v0", render_mode="rgb_array", width=48, height=40,
                   textured=textured, camera=camera)
    env.reset(seed=0)
    model = env.unwrapped.model
    frame = env.render()
    assert frame.shape == (40, 48, 3) and frame.std() > 5
    materials = {model.material(i).name for i in range(model.nmat)}
    assert ("vlmrm_body" in materials) is textured
    cameras = {model.camera(i).name for i in range(model.ncam)}
    assert (PAPER_CAMERA_NAME in cameras) is (camera == "paper")
    assert (TRACKING_CAMERA_NAME in cameras) is (camera == "tracking")
    assert env.observation_space.shape == gym.make("Humanoid-v5").observation_space.shape


def test_humanoid_never_terminates_early_within_the_episode_length():
    env = make_gym_env(EnvConfig(id="vlmrm/Humanoid-v0", episode_length=100,
                                 terminate_early=False))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    lowest = np.inf
    for t in range(1, 101):
        action = rng.uniform(-0.4, 0.4, env.action_space.shape).astype(np.float32)
        _, _, terminated, truncated, _ = env.step(action)
        lowest = min(lowest, env.unwrapped.data.qpos[2])
        assert not terminated
        assert truncated is (t == 100)
    assert lowest < 1.0  # it fell: stock Humanoid-v5 would have ended the episode


def _project(model, data, cam_id: int, point: np.ndarray, h: int, w: int) -> tuple[float, float]:
    """Pixel (row, col) of a world point seen by model camera ``cam_id``."""
    rot = data.cam_xmat[cam_id].reshape(3, 3)
    local = rot.T @ (point - data.cam_xpos[cam_id])  # camera looks along its -z
    focal = (h / 2) / math.tan(math.radians(model.cam_fovy[cam_id]) / 2)
    return h / 2 - focal * local[1] / -local[2], w / 2 + focal * local[0] / -local[2]


def test_tracking_camera_follows_the_torso_over_a_random_rollout():
    env = gym.make("vlmrm/Humanoid-v0", render_mode="rgb_array", width=64, height=64,
                   camera="tracking")
    env.reset(seed=3)
    sim = env.unwrapped
    cam = sim.model.camera(TRACKING_CAMERA_NAME).id
    assert sim.mujoco_renderer.camera_id == cam  # this camera renders the frames
    offsets = []
    for t in range(80):
        env.step(env.action_space.sample())
        data = sim.data
        offsets.append(data.cam_xpos[cam] - data.subtree_com[1])
        if t % 10 == 9:
            row, col = _project(sim.model, data, cam, data.xpos[1], 64, 64)
            assert abs(row - 32) < 0.3 * 64 and abs(col - 32) < 0.3 * 64, (t, row, col)
    assert np.ptp(np.array(offsets), axis=0).max() < 1e-6  # fixed offset from the body's com
    forward = -data.cam_xmat[cam].reshape(3, 3)[:, 2]
    assert np.allclose(forward, PAPER_CAMERA.forward(), atol=1e-6)  # azimuth and elevation


def _free_camera_frame(sim, size: int) -> np.ndarray:
    """What Gymnasium rendered for the paper's code: mjvCamera(free) with its settings."""
    import mujoco  # after vlmrm: it picks the headless GL backend before mujoco loads

    free = mujoco.MjvCamera()
    free.type = mujoco.mjtCamera.mjCAMERA_FREE
    free.trackbodyid = PAPER_CAMERA.body  # ignored by MuJoCo for a free camera
    free.lookat[:], free.distance = PAPER_CAMERA.lookat, PAPER_CAMERA.distance
    free.elevation, free.azimuth = PAPER_CAMERA.elevation, PAPER_CAMERA.azimuth
    with mujoco.Renderer(sim.model, size, size) as renderer:
        renderer.update_scene(sim.data, camera=free)
        frame = renderer.render().astype(int)
    if sim.mujoco_renderer.viewer is not None:  # give the env its GL context back
        sim.mujoco_renderer.viewer.make_context_current()
    return frame


def test_paper_camera_is_the_papers_free_camera_fixed_in_the_world():
    """Over a rollout in which the humanoid moves, our ``paper`` view stays what the paper's
    Gymnasium free camera (trackbodyid 1, distance 3.5, look-at (0, 0, 1), elevation -10,
    azimuth 180) rendered: it does not follow the body."""
    env = gym.make("vlmrm/Humanoid-v0", render_mode="rgb_array", width=64, height=64)
    env.reset(seed=0)
    sim = env.unwrapped
    cam = sim.model.camera(PAPER_CAMERA_NAME).id
    start = sim.data.cam_xpos[cam].copy()
    for t in range(40):
        env.step(env.action_space.sample())
        if t % 20 == 19:
            assert np.abs(env.render().astype(int) - _free_camera_frame(sim, 64)).mean() < 2.0
    assert np.array_equal(sim.data.cam_xpos[cam], start)
    qpos = sim.data.qpos.copy()
    qpos[1] += 1.0  # the humanoid steps 1 m sideways: the paper's view does not follow
    sim.set_state(qpos, sim.data.qvel)
    moved = env.render().astype(int)
    assert np.abs(moved - _free_camera_frame(sim, 64)).mean() < 2.0
    stock = gym.make("vlmrm/Humanoid-v0", render_mode="rgb_array", width=64, height=64,
                     camera="stock")
    stock.reset(seed=0)
    stock.unwrapped.set_state(sim.init_qpos, np.zeros_like(sim.init_qvel))
    sim.set_state(sim.init_qpos, np.zeros_like(sim.init_qvel))
    assert np.abs(stock.render().astype(int) - _free_camera_frame(sim, 64)).mean() > 5.0


def test_generic_mujoco_env_takes_textures_camera_and_a_user_xml(tmp_path):
    from gymnasium.envs.mujoco.mujoco_env import expand_model_path

    env = make_gym_env(EnvConfig(id="Hopper-v5", textured=True, camera="paper"), (32, 32))
    env.reset(seed=0)
    assert env.render().shape == (32, 32, 3)
    xml = tmp_path / "my_humanoid.xml"
    source = open(expand_model_path("humanoid.xml")).read()
    xml.write_text(source.replace('<body name="torso" pos="0 0 1.4">',
                                  '<body name="torso" pos="0 0 1.4">\n'
                                  '<camera name="side" mode="track" pos="0 -4 0" '
                                  'xyaxes="1 0 0 0 0 1"/>'))
    cfg = load_config(None, [*GT, "env.id=Humanoid-v5", f"env.xml={xml}", "env.camera=side"]).env
    env = make_gym_env(cfg, (32, 32))
    env.reset(seed=0)
    assert env.unwrapped.model.camera("side").id == env.unwrapped.mujoco_renderer.camera_id
    with pytest.raises(ConfigError, match="env.camera='nope'"):
        make_gym_env(EnvConfig(id="Humanoid-v5", xml=str(xml), camera="nope"), (32, 32))


@pytest.mark.parametrize("override, message", [
    ("env.textured=true", "env.textured=True does not apply to env.id='CartPole-v1'"),
    ("env.camera=paper", "env.camera='paper' does not apply"),
    ("env.xml=/no/such.xml", "does not apply"),
])
def test_scene_options_on_envs_that_cannot_take_them_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, [*GT, "env.id=CartPole-v1", override])


def test_bad_scene_values_are_config_errors():
    with pytest.raises(ConfigError, match="env.xml='/no/such.xml' is not an existing MJCF"):
        load_config(None, [*GT, "env.id=vlmrm/Humanoid-v0", "env.xml=/no/such.xml"])
    with pytest.raises(ConfigError, match="logging.video_every=-1"):
        load_config(None, [*GT, "logging.video_every=-1"])
    with pytest.raises(ConfigError, match="env.camera=.* does not apply.*vlmrm/Humanoid-v0"):
        load_config(None, [*GT, "env.id=vlmrm/CartPole-v0", "env.camera=paper"])


def test_scenes_run_in_parallel_worker_processes():
    env = make_env(EnvConfig(id="vlmrm/CartPole-v0", num_envs=2, parallel=True), None,
                   from_pixels=True, seed=0)
    try:
        td = env.rollout(3)
    finally:
        env.close()
    assert td["next", "pixels"].shape[:2] == (2, 3)
    assert td["next", "is_success"].shape[:2] == (2, 3)


def test_closing_parallel_workers_keeps_the_torch_thread_count(monkeypatch):
    """TorchRL 0.14's ParallelEnv.close added its workers to the caller's thread count (1
    became 2 on a 2-core machine), so the throughput benchmark scored on 2 threads where
    training scores on agent.num_threads=1."""
    import torch
    import torchrl

    # TorchRL caps what close sets at the thread count torch had when torchrl was imported;
    # the suite's conftest set 1 before that, which would hide the problem.
    monkeypatch.setattr(torchrl, "_THREAD_POOL_INIT", 4)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        env = make_env(EnvConfig(id="CartPole-v1", num_envs=2, parallel=True), None,
                       from_pixels=False, seed=0)
        env.rollout(2)
        env.close()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def _worker_render_threads(env_cfg: EnvConfig) -> str | None:
    """LP_NUM_THREADS as a worker process sees it after building its env."""
    import os

    from vlmrm.envs.gymenv import make_worker_gym_env

    make_worker_gym_env(env_cfg, None, from_pixels=False).close()
    return os.environ.get("LP_NUM_THREADS")


def test_parallel_workers_render_with_one_thread_unless_told(monkeypatch):
    import concurrent.futures
    import multiprocessing
    import os

    from vlmrm.envs.gymenv import make_worker_gym_env

    cfg = EnvConfig(id="vlmrm/CartPole-v0")
    monkeypatch.delenv("LP_NUM_THREADS", raising=False)
    make_worker_gym_env(cfg, None, from_pixels=False).close()
    assert "LP_NUM_THREADS" not in os.environ  # the main process keeps Mesa's default
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        assert pool.submit(_worker_render_threads, cfg).result() == "1"
    monkeypatch.setenv("LP_NUM_THREADS", "3")  # the user's setting wins
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        assert pool.submit(_worker_render_threads, cfg).result() == "3"
