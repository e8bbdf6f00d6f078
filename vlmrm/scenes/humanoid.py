"""The paper's Humanoid scene: textured, filmed by the paper's camera, no early termination."""

from __future__ import annotations

from typing import Any

from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv

from vlmrm.scenes.mjcf import mujoco_scene_kwargs


def make_humanoid(textured: bool = True, camera: str = "paper", xml_file: str = "humanoid.xml",
                  texture_dir: str | None = None, terminate_when_unhealthy: bool = False,
                  **kwargs: Any) -> HumanoidEnv:
    """``Humanoid-v5`` dynamics and observations in the paper's scene.

    ``textured``: sky box, tiled floor, textured body, bright light from above (False: the
    stock look). ``texture_dir``: a folder with your own ``sky.png`` / ``floor.png`` /
    ``body.png`` for the textured look (see :mod:`vlmrm.scenes.textures`).
    ``camera``: "paper" (the paper's fixed view of the humanoid's front), "tracking" (that
    view following the torso), "stock", or a camera name in ``xml_file``.
    ``terminate_when_unhealthy=False``: the humanoid may fall and get up.
    """
    scene = mujoco_scene_kwargs(xml_file, textured, camera, texture_dir)
    return HumanoidEnv(terminate_when_unhealthy=terminate_when_unhealthy, **scene, **kwargs)
