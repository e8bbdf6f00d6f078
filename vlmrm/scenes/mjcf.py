"""Dress a MuJoCo model for a VLM: the paper's textured look, light and camera.

The scene is edited with MuJoCo's own model-editing API (``mujoco.MjSpec``) and written
as a new MJCF file, so it works on any model file (the stock Gymnasium humanoid, or a
user's ``env.xml``). Textures are pictures painted by :mod:`vlmrm.scenes.textures` (or the
user's own, from ``texture_dir``); nothing is copied from elsewhere.

Cameras. The paper's code passed ``trackbodyid=1, distance=3.5, lookat=(0, 0, 1),
elevation=-10, azimuth=180`` to Gymnasium's free camera, and MuJoCo ignores ``trackbodyid``
for a free camera: the view it rendered stays put in the world (checked by rendering with
gymnasium 0.28.1, the paper's version, and 1.4). ``camera="paper"`` is that fixed view;
``camera="tracking"`` is the same view following the torso (what ``trackbodyid`` asked for).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from vlmrm.fileio import write_text
from vlmrm.scenes.textures import FLOOR_PICTURE_M, texture_files

#: Names of the cameras :func:`dress_model` adds for ``camera="paper"`` / ``"tracking"``.
PAPER_CAMERA_NAME = "vlmrm_paper"
TRACKING_CAMERA_NAME = "vlmrm_tracking"


@dataclass(frozen=True)
class CameraSettings:
    """A view in MuJoCo ``mjvCamera`` terms, plus the body a tracking camera follows."""

    body: int = 1
    distance: float = 3.5
    lookat: tuple[float, float, float] = (0.0, 0.0, 1.0)
    elevation: float = -10.0
    azimuth: float = 180.0
    fovy: float = 45.0

    def forward(self) -> np.ndarray:
        az, el = np.deg2rad(self.azimuth), np.deg2rad(self.elevation)
        return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])

    def world_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Camera position and rotation matrix (columns: right, up, backward) in the world."""
        f = self.forward()
        pos = np.asarray(self.lookat) - self.distance * f
        right = np.cross(f, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, f)
        return pos, np.stack([right, up, -f], axis=1)


#: The paper's camera settings: distance 3.5, look-at (0, 0, 1), elevation -10 degrees,
#: azimuth 180 degrees (facing the humanoid's front); body 1 (the torso) for "tracking".
PAPER_CAMERA = CameraSettings()

CAMERA_CHOICES = ("paper", "tracking", "stock")


def dress_model(xml_path: str | os.PathLike, textured: bool, camera: str | None,
                texture_dir: str | os.PathLike | None = None) -> Path:
    """A new MJCF file: ``xml_path`` with the textured look and/or the paper's camera added.

    ``camera``: "paper" adds :data:`PAPER_CAMERA` fixed in the world as ``vlmrm_paper``,
    "tracking" adds it on body 1 as ``vlmrm_tracking``; anything else leaves the cameras
    alone. ``texture_dir``: the user's pictures (see :mod:`vlmrm.scenes.textures`). The file
    lands in a per-content cache directory, written atomically so parallel env workers can
    share it.
    """
    source = Path(xml_path).resolve()
    spec = mujoco.MjSpec.from_file(str(source))
    _absolute_asset_dirs(spec, source.parent)
    if textured:
        apply_textures(spec, texture_files(texture_dir))
    if camera == "paper":
        add_fixed_camera(spec, PAPER_CAMERA, PAPER_CAMERA_NAME)
    elif camera == "tracking":
        add_tracking_camera(spec, PAPER_CAMERA, TRACKING_CAMERA_NAME)
    spec.compile()
    return _write_cached(spec.to_xml(), source.stem)


def _absolute_asset_dirs(spec: mujoco.MjSpec, base: Path) -> None:
    # The dressed file lives elsewhere: relative mesh/texture folders must stay findable.
    for attr in ("meshdir", "texturedir"):
        value = getattr(spec.compiler, attr) or ""
        if not os.path.isabs(value):
            setattr(spec.compiler, attr, str(base / value) + os.sep)


def apply_textures(spec: mujoco.MjSpec, files: dict[str, Path]) -> None:
    """The paper's look: sky box, tiled floor and robot surface from ``files`` (role -> PNG,
    see :func:`vlmrm.scenes.textures.texture_files`), a matte floor, a shiny body and one
    bright light from above."""
    _replace_sky(spec, files["sky"])
    # With texuniform, MuJoCo repeats a plane's texture texrepeat times per 2 m (measured:
    # texrepeat 3 renders exactly like the paper's 60 over its 40 m floor), for any floor size.
    repeat = 2 / FLOOR_PICTURE_M
    floor = _file_material(spec, "floor", files["floor"], mujoco.mjtTexture.mjTEXTURE_2D,
                           texrepeat=[repeat, repeat], texuniform=True)
    floor.reflectance, floor.specular, floor.shininess = 0.0, 0.0, 0.0
    body = _file_material(spec, "body", files["body"], mujoco.mjtTexture.mjTEXTURE_CUBE,
                          texuniform=True)
    body.specular, body.shininess = 1.0, 1.0
    for geom in spec.geoms:
        is_floor = geom.type == mujoco.mjtGeom.mjGEOM_PLANE
        geom.material, geom.rgba = (floor if is_floor else body).name, [1, 1, 1, 1]
    _replace_lights(spec)


def _replace_sky(spec: mujoco.MjSpec, picture: Path) -> None:
    for skybox in [t for t in spec.textures if t.type == mujoco.mjtTexture.mjTEXTURE_SKYBOX]:
        spec.delete(skybox)  # one sky box only: MuJoCo would draw the first one
    # A sky box needs no material: MuJoCo draws it as the background.
    spec.add_texture(name="vlmrm_sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX, file=str(picture))


def _file_material(spec: mujoco.MjSpec, role: str, picture: Path, kind: mujoco.mjtTexture,
                   **attrs) -> mujoco.MjsMaterial:
    texture = spec.add_texture(name=f"vlmrm_{role}_picture", type=kind, file=str(picture))
    mat = spec.add_material(name=f"vlmrm_{role}", **attrs)
    textures = [""] * int(mujoco.mjtTextureRole.mjNTEXROLE)
    textures[int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = texture.name
    mat.textures = textures
    return mat


def _replace_lights(spec: mujoco.MjSpec) -> None:
    """One directional light straight down (diffuse 1, specular 0.5, casting shadows) and
    MuJoCo's default headlight, as in the paper's scene file."""
    for light in list(spec.lights):
        spec.delete(light)
    spec.worldbody.add_light(name="vlmrm_sun", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                             pos=[0, 0, 1], dir=[0, 0, -1], diffuse=[1, 1, 1],
                             specular=[0.5, 0.5, 0.5], castshadow=True)
    spec.visual.headlight.ambient = [0.1, 0.1, 0.1]
    spec.visual.headlight.diffuse = [0.4, 0.4, 0.4]
    spec.visual.headlight.specular = [0.5, 0.5, 0.5]
    # MuJoCo's 4096-pixel shadow map costs half the software render time; at the reward
    # models' input sizes 2048 gives the same picture (mean difference < 0.02 levels).
    spec.visual.quality.shadowsize = 2048


def add_fixed_camera(spec: mujoco.MjSpec, cam: CameraSettings, name: str) -> None:
    """Add ``cam`` as a camera fixed in the world: the view Gymnasium's free camera renders."""
    pos, rot = cam.world_pose()
    spec.worldbody.add_camera(name=name, mode=mujoco.mjtCamLight.mjCAMLIGHT_FIXED, pos=pos,
                              quat=_quat(rot), fovy=cam.fovy)


def add_tracking_camera(spec: mujoco.MjSpec, cam: CameraSettings, name: str) -> None:
    """Add ``cam`` to body ``cam.body`` as a ``trackcom`` camera: the pose holds at the model's
    reference configuration, then the camera keeps its offset from the body's centre of mass."""
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    body_pos, body_rot = data.xpos[cam.body], data.xmat[cam.body].reshape(3, 3)
    world_pos, world_rot = cam.world_pose()
    body = spec.body(model.body(cam.body).name)
    body.add_camera(name=name, mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM,
                    pos=body_rot.T @ (world_pos - body_pos), quat=_quat(body_rot.T @ world_rot),
                    fovy=cam.fovy)


def _quat(rot: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot).reshape(-1))
    return quat


def _write_cached(xml: str, stem: str) -> Path:
    folder = Path(tempfile.gettempdir()) / "vlmrm-scenes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{hashlib.sha1(xml.encode()).hexdigest()[:12]}.xml"
    if not path.exists():  # parallel env workers may write it at the same time
        write_text(path, xml)
    return path


def mujoco_scene_kwargs(xml_file: str | os.PathLike, textured: bool, camera: str | None,
                        texture_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Keyword arguments for a Gymnasium MuJoCo env (``xml_file``, ``camera_name``).

    ``xml_file`` is a path or a Gymnasium asset name ("humanoid.xml"). ``camera``: "paper"
    (the paper's fixed view), "tracking" (that view following the torso), "stock"/None (the
    env's own view) or the name of a camera in the model. ``texture_dir``: a folder with the
    user's ``sky.png`` / ``floor.png`` / ``body.png``; needs ``textured``.
    """
    from gymnasium.envs.mujoco.mujoco_env import expand_model_path

    from vlmrm.errors import ConfigError

    if texture_dir is not None and not textured:
        raise ConfigError(f"texture_dir={str(texture_dir)!r} needs the textured scene: set "
                          "textured=true (env.textured=true), or drop texture_dir.")
    path = Path(expand_model_path(str(xml_file)))
    out: dict[str, str] = {"xml_file": str(path)}
    if camera not in (None, *CAMERA_CHOICES):
        out["camera_name"] = _model_camera(path, camera)
    if textured or camera in ("paper", "tracking"):
        out["xml_file"] = str(dress_model(path, textured, camera, texture_dir))
    if camera in ("paper", "tracking"):
        out["camera_name"] = PAPER_CAMERA_NAME if camera == "paper" else TRACKING_CAMERA_NAME
    return out


def _model_camera(path: Path, camera: str) -> str:
    from vlmrm.errors import ConfigError

    names = [c.name for c in mujoco.MjSpec.from_file(str(path)).cameras if c.name]
    if camera not in names:
        raise ConfigError(
            f"env.camera={camera!r} is neither 'paper', 'tracking' nor 'stock' nor a camera "
            f"of {str(path)!r} (its named cameras: {names or 'none'}). Use env.camera=paper "
            "for the paper's view.")
    return camera
