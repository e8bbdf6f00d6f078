"""Dress a MuJoCo model for a VLM: textures, light and the paper's tracking camera.

The scene is edited with MuJoCo's own model-editing API (``mujoco.MjSpec``) and written
as a new MJCF file, so it works on any model file (the stock Gymnasium humanoid, or a
user's ``env.xml``). All textures are MuJoCo built-ins; nothing is copied from elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

#: Name of the camera :func:`dress_model` adds for ``camera="paper"``.
PAPER_CAMERA_NAME = "vlmrm_paper"


@dataclass(frozen=True)
class TrackingCamera:
    """A free-camera pose (MuJoCo ``mjvCamera`` terms) that follows one body's centre of mass.

    The pose holds at the model's reference configuration; afterwards the camera keeps its
    offset from the body's subtree centre of mass (MJCF ``mode="trackcom"``).
    """

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


#: The paper's camera: track body 1 (the torso), distance 3.5, look-at (0, 0, 1),
#: elevation -10 degrees, azimuth 180 degrees (facing the humanoid's front).
PAPER_CAMERA = TrackingCamera()

CAMERA_CHOICES = ("paper", "stock")


def dress_model(xml_path: str | os.PathLike, textured: bool, camera: str | None) -> Path:
    """A new MJCF file: ``xml_path`` with the textured look and/or the paper's camera added.

    ``camera`` is "paper" (add :data:`PAPER_CAMERA` as ``vlmrm_paper``) or anything else
    (left alone). The file lands in a per-content cache directory, written atomically so
    parallel env workers can share it.
    """
    source = Path(xml_path).resolve()
    spec = mujoco.MjSpec.from_file(str(source))
    _absolute_asset_dirs(spec, source.parent)
    if textured:
        apply_textures(spec)
    if camera == "paper":
        add_tracking_camera(spec, PAPER_CAMERA, PAPER_CAMERA_NAME)
    spec.compile()
    return _write_cached(spec.to_xml(), source.stem)


def _absolute_asset_dirs(spec: mujoco.MjSpec, base: Path) -> None:
    # The dressed file lives elsewhere: relative mesh/texture folders must stay findable.
    for attr in ("meshdir", "texturedir"):
        value = getattr(spec.compiler, attr) or ""
        if not os.path.isabs(value):
            setattr(spec.compiler, attr, str(base / value) + os.sep)


def apply_textures(spec: mujoco.MjSpec) -> None:
    """Sky box, tiled floor, a speckled light-grey body and a directional light from above."""
    sky = spec.add_texture(name="vlmrm_sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
                           builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT, width=256, height=256,
                           rgb1=[0.38, 0.60, 0.88], rgb2=[0.92, 0.95, 1.0])
    del sky  # a skybox texture needs no material: MuJoCo draws it as the background
    floor_tex = spec.add_texture(
        name="vlmrm_tiles", type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, width=256, height=256,
        rgb1=[0.78, 0.74, 0.66], rgb2=[0.62, 0.58, 0.52],
        mark=mujoco.mjtMark.mjMARK_EDGE, markrgb=[0.35, 0.33, 0.30])
    body_tex = spec.add_texture(
        name="vlmrm_skin", type=mujoco.mjtTexture.mjTEXTURE_CUBE,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_FLAT, width=128, height=128,
        rgb1=[0.86, 0.87, 0.90], rgb2=[0.86, 0.87, 0.90],
        mark=mujoco.mjtMark.mjMARK_RANDOM, markrgb=[0.55, 0.57, 0.62], random=0.08)
    floor = _material(spec, "vlmrm_floor", floor_tex.name, texrepeat=[1.0, 1.0], texuniform=True)
    body = _material(spec, "vlmrm_body", body_tex.name, texuniform=True)
    body.specular, body.shininess = 0.4, 0.5
    for geom in spec.geoms:
        if geom.type == mujoco.mjtGeom.mjGEOM_PLANE:
            geom.material, geom.rgba = floor.name, [1, 1, 1, 1]
        else:
            geom.material, geom.rgba = body.name, [1, 1, 1, 1]
    for skybox in [t for t in spec.textures
                   if t.type == mujoco.mjtTexture.mjTEXTURE_SKYBOX and t.name != "vlmrm_sky"]:
        spec.delete(skybox)  # one sky box only: MuJoCo would draw the first one
    for light in list(spec.lights):
        spec.delete(light)
    spec.worldbody.add_light(name="vlmrm_sun", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                             pos=[0, 0, 5], dir=[0, 0, -1], diffuse=[0.75, 0.75, 0.72],
                             specular=[0.2, 0.2, 0.2], castshadow=True)
    # MuJoCo's 4096-pixel shadow map costs half the software render time; at the reward
    # models' input sizes 2048 gives the same picture (mean difference < 0.02 levels).
    spec.visual.quality.shadowsize = 2048
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.35, 0.35, 0.35]


def _material(spec: mujoco.MjSpec, name: str, texture: str, **attrs) -> mujoco.MjsMaterial:
    mat = spec.add_material(name=name, **attrs)
    textures = [""] * int(mujoco.mjtTextureRole.mjNTEXROLE)
    textures[int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = texture
    mat.textures = textures
    return mat


def add_tracking_camera(spec: mujoco.MjSpec, cam: TrackingCamera, name: str) -> None:
    """Add ``cam`` to body ``cam.body`` as a ``trackcom`` camera (pose given in the world)."""
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    body_pos, body_rot = data.xpos[cam.body], data.xmat[cam.body].reshape(3, 3)
    world_pos, world_rot = cam.world_pose()
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, (body_rot.T @ world_rot).reshape(-1))
    body = spec.body(model.body(cam.body).name)
    body.add_camera(name=name, mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM,
                    pos=body_rot.T @ (world_pos - body_pos), quat=quat, fovy=cam.fovy)


def _write_cached(xml: str, stem: str) -> Path:
    folder = Path(tempfile.gettempdir()) / "vlmrm-scenes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{hashlib.sha1(xml.encode()).hexdigest()[:12]}.xml"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(xml)
        os.replace(tmp, path)
    return path


def mujoco_scene_kwargs(xml_file: str | os.PathLike, textured: bool,
                        camera: str | None) -> dict[str, str]:
    """Keyword arguments for a Gymnasium MuJoCo env (``xml_file``, ``camera_name``).

    ``xml_file`` is a path or a Gymnasium asset name ("humanoid.xml"). ``camera``:
    "paper", "stock"/None (the env's own view) or the name of a camera in the model.
    """
    from gymnasium.envs.mujoco.mujoco_env import expand_model_path

    from vlmrm.errors import ConfigError

    path = Path(expand_model_path(str(xml_file)))
    out: dict[str, str] = {"xml_file": str(path)}
    if camera not in (None, *CAMERA_CHOICES):
        names = [c.name for c in mujoco.MjSpec.from_file(str(path)).cameras if c.name]
        if camera not in names:
            raise ConfigError(
                f"env.camera={camera!r} is neither 'paper' nor 'stock' nor a camera of "
                f"{str(path)!r} (its named cameras: {names or 'none'}). Use env.camera=paper "
                "for the paper's tracking camera.")
        out["camera_name"] = camera
    if textured or camera == "paper":
        out["xml_file"] = str(dress_model(path, textured, camera))
    if camera == "paper":
        out["camera_name"] = PAPER_CAMERA_NAME
    return out
