"""The paper's Humanoid scene: textured, tracked by the paper's camera, no early termination."""

from __future__ import annotations

from typing import Any

from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv

from vlmrm.scenes.mjcf import mujoco_scene_kwargs


def make_humanoid(textured: bool = True, camera: str = "paper", xml_file: str = "humanoid.xml",
                  terminate_when_unhealthy: bool = False, **kwargs: Any) -> HumanoidEnv:
    """``Humanoid-v5`` dynamics and observations in the paper's scene.

    ``textured``: sky box, tiled floor, textured body, light from above (False: stock look).
    ``camera``: "paper" (track the torso from the front), "stock", or a camera name in
    ``xml_file``. ``terminate_when_unhealthy=False``: the humanoid may fall and get up.
    """
    scene = mujoco_scene_kwargs(xml_file, textured, camera)
    return HumanoidEnv(terminate_when_unhealthy=terminate_when_unhealthy, **scene, **kwargs)
