"""The textured MuJoCo scene's pictures: the painted defaults and a user's ``texture_dir``."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

from tests.helpers import CONFIGS
from vlmrm.cli import main
from vlmrm.config import load_config

# Imported before any MuJoCo renderer exists: loading torch's triton after Mesa's EGL
# driver in one process crashed here (a segfault inside libtriton).
from vlmrm.envs.factory import scene_kwargs
from vlmrm.errors import ConfigError
from vlmrm.scenes.mjcf import mujoco_scene_kwargs
from vlmrm.scenes.textures import FLOOR_PICTURE_M, painted


def picture(role: str) -> np.ndarray:
    return np.asarray(Image.open(painted(role)).convert("RGB")).astype(float)


def solid_png(path, rgb, size=(32, 32)) -> None:
    Image.new("RGB", size, rgb).save(path)


def humanoid_frame(size: int = 64, **kwargs) -> tuple[gym.Env, np.ndarray]:
    env = gym.make("vlmrm/Humanoid-v0", render_mode="rgb_array", width=size, height=size,
                   **kwargs)
    env.reset(seed=0)
    return env, env.render().astype(int)


def test_painted_pictures_look_like_the_papers_sky_slate_floor_and_white_body():
    sky, floor, body = picture("sky"), picture("floor"), picture("body")
    n = sky.shape[0]
    band = sky[int(0.38 * n):n // 2]  # what the paper's camera sees just above the horizon
    assert np.median(band[..., 0]) < 80 and np.median(band[..., 2]) > 200  # deep blue
    assert (band[..., 0] > 100).mean() > 0.1 and band.min(-1).max() > 220  # white clouds
    assert sky[:n // 4, :, 2].mean() > sky[-n // 4:, :, 0].mean()  # pale towards the bottom
    assert 40 < floor.mean() < 70 and 8 < floor.std() < 25  # dark grey slate
    assert np.ptp(floor.reshape(-1, 3).mean(0)) < 1  # grey, not tinted
    assert body.mean() > 225 and body.std() > 2  # near-white, with streaks


@pytest.mark.parametrize("role, axis", [("sky", 1), ("body", 0), ("body", 1)])
def test_painted_pictures_repeat_without_seams(role, axis):
    img = np.moveaxis(picture(role), axis, 0)
    seam = np.abs(img[0] - img[-1]).mean()
    inside = np.abs(img[1:] - img[:-1]).mean()
    assert seam < 2 * inside + 1


def test_texture_dir_pictures_replace_the_painted_ones(tmp_path):
    solid_png(tmp_path / "sky.png", (220, 30, 30))
    solid_png(tmp_path / "floor.png", (30, 200, 30), size=(40, 24))  # floor: any shape
    _, frame = humanoid_frame(texture_dir=str(tmp_path))
    top, bottom = frame[:8].reshape(-1, 3).mean(0), frame[-8:].reshape(-1, 3).mean(0)
    assert top[0] > 2 * top[2] and top[0] > 2 * top[1]  # red sky
    assert bottom[1] > 2 * bottom[0]  # green floor
    grey = (np.ptp(frame, axis=-1) < 12) & (frame.mean(-1) > 90)
    assert grey.sum() > 30  # body.png missing: the painted white body is still there


def test_a_relative_texture_dir_is_read_against_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "pictures").mkdir()
    solid_png(tmp_path / "pictures" / "sky.png", (220, 30, 30))
    monkeypatch.chdir(tmp_path)
    _, frame = humanoid_frame(texture_dir="pictures")
    top = frame[:8].reshape(-1, 3).mean(0)
    assert top[0] > 2 * top[2]


def test_texture_dir_dresses_other_mujoco_envs(tmp_path):
    solid_png(tmp_path / "floor.png", (30, 200, 30))
    kwargs = mujoco_scene_kwargs("hopper.xml", True, "paper", texture_dir=tmp_path)
    env = gym.make("Hopper-v5", render_mode="rgb_array", width=48, height=48, **kwargs)
    env.reset(seed=0)
    bottom = env.render()[-8:].reshape(-1, 3).mean(0)
    assert bottom[1] > 2 * bottom[0]


def test_one_floor_picture_covers_two_thirds_of_a_metre(tmp_path):
    """The paper's floor: texrepeat 60 over its 40 m plane, i.e. one picture per 2/3 m."""
    import mujoco  # after vlmrm: it picks the headless GL backend before mujoco loads

    halves = np.zeros((64, 64, 3), np.uint8)
    halves[:, 32:] = 255
    Image.fromarray(halves).save(tmp_path / "floor.png")
    env, _ = humanoid_frame(texture_dir=str(tmp_path))
    sim, size, distance = env.unwrapped, 400, 3.0
    top_down = mujoco.MjvCamera()
    top_down.lookat[:], top_down.distance, top_down.elevation = (6.0, 0.0, 0.0), distance, -90
    with mujoco.Renderer(sim.model, size, size) as renderer:
        renderer.update_scene(sim.data, camera=top_down)
        frame = renderer.render()[..., 0].astype(int)
    edges = max((np.nonzero(np.diff(line > 128))[0] for line in (frame[size // 2],
                                                                 frame[:, size // 2])), key=len)
    metres_per_pixel = 2 * distance * math.tan(math.radians(22.5)) / size  # fovy 45
    half_period = np.diff(edges).mean() * metres_per_pixel
    assert 2 * half_period == pytest.approx(FLOOR_PICTURE_M, rel=0.05)


def _jpeg(path):
    Image.new("RGB", (16, 16), (1, 2, 3)).save(path, format="JPEG")


@pytest.mark.parametrize("setup, kwargs, message", [
    (None, {}, "is not a directory"),
    (lambda d: (d / "notes.txt").write_text("x"), {}, "holds none of sky.png, floor.png"),
    (lambda d: _jpeg(d / "sky.png"), {}, "MuJoCo reads PNG only"),
    (lambda d: solid_png(d / "body.png", (9, 9, 9), size=(64, 32)), {}, "must be square"),
    (lambda d: (d / "floor.png").write_bytes(b"not a png"), {}, "not a readable image"),
    (lambda d: solid_png(d / "sky.png", (9, 9, 9)), {"textured": False},
     "needs the textured scene"),
])
def test_bad_texture_dirs_are_config_errors(tmp_path, setup, kwargs, message):
    """A missing or empty folder, a JPEG, a non-square sky/body, an unreadable file, or
    pictures without the textured scene: each refused with a message naming the fix."""
    folder = tmp_path / "pictures"
    if setup is not None:
        folder.mkdir()
        setup(folder)
    with pytest.raises(ConfigError, match=message):
        gym.make("vlmrm/Humanoid-v0", texture_dir=str(folder), **kwargs)


def test_an_empty_texture_dir_string_is_a_config_error():
    with pytest.raises(ConfigError, match="is not a directory"):
        gym.make("vlmrm/Humanoid-v0", texture_dir=" ")


def test_env_texture_dir_flows_from_the_config_and_bad_values_exit_2(tmp_path, capsys):
    (tmp_path / "sky.png").write_bytes(b"")  # existence is enough for the config check
    cfg = load_config(CONFIGS / "humanoid_kneeling.yaml", [f"env.texture_dir={tmp_path}"])
    assert scene_kwargs(cfg.env)["texture_dir"] == str(tmp_path.resolve())
    for bad, message in [(f"env.texture_dir={tmp_path / 'nope'}", "is not an existing folder"),
                         ("env.textured=false", "env.textured=false")]:
        extra = [] if "texture_dir" in bad else [f"env.texture_dir={tmp_path}"]
        code = main(["fit", "--config", str(CONFIGS / "humanoid_kneeling.yaml"), bad, *extra,
                     f"logging.output_dir={tmp_path / 'runs'}"])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "env.texture_dir" in err
        assert not (tmp_path / "runs").exists()
