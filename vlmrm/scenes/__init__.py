"""The paper's scenes, registered as Gymnasium ids under the ``vlmrm/`` namespace.

=================================  ==================================================
``vlmrm/Humanoid-v0``              Humanoid-v5 dynamics; textured scene (or your own
                                   pictures: ``texture_dir``), the paper's camera, no
                                   early termination, 100 steps.
``vlmrm/CartPole-v0``              no termination, wrapped angle, cart clipped to the
                                   track, reward = ``is_success``, 200 steps.
``vlmrm/MountainCarContinuous-v0`` realistic textured render; ``is_success`` once
                                   the car reached the flag (sticky, the car held at
                                   x <= 0.45), no termination at the flag, 999 steps.
=================================  ==================================================

Importing :mod:`vlmrm.envs.factory` or :mod:`vlmrm.config` registers them (env worker
processes included).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import gymnasium as gym


@dataclass(frozen=True)
class Scene:
    """What a registered scene supports, so config validation can say what applies."""

    entry_point: str
    max_episode_steps: int
    options: tuple[str, ...]  # which of env.textured / camera / xml / texture_dir it takes
    success: bool  # emits info["is_success"]
    sized: bool  # renders at a requested width/height
    #: What the env's own reward (the run's ground truth, ``gt_reward``) measures.
    ground_truth: str = ""
    #: Whether that measures the task the scene's prompts describe: the reward-hacking
    #: monitor gives its verdict only then (``logging.monitor_gt_measures_task`` overrides).
    gt_measures_task: bool = True


SCENES: dict[str, Scene] = {
    # Humanoid-v5's reward pays for running forward and staying up: the presets' poses
    # (kneeling, lotus, splits, ...) have no measure of their own.
    "vlmrm/Humanoid-v0": Scene("vlmrm.scenes.humanoid:make_humanoid", 100,
                               ("textured", "camera", "xml", "texture_dir"), success=False, sized=True,
                               ground_truth="Humanoid-v5's locomotion reward (forward speed, "
                               "staying healthy, control cost)", gt_measures_task=False),
    "vlmrm/CartPole-v0": Scene("vlmrm.scenes.cartpole:PaperCartPoleEnv", 200, (),
                               success=True, sized=False,
                               ground_truth="1 per step with the pole upright and the cart on "
                               "the track"),
    "vlmrm/MountainCarContinuous-v0": Scene("vlmrm.scenes.mountaincar:PaperMountainCarEnv",
                                            999, ("textured",), success=True, sized=True,
                                            ground_truth="MountainCarContinuous' reward "
                                            "(+100 per step at the flag, minus the action's cost)"),
}


def register_scenes() -> None:
    """Register :data:`SCENES` with Gymnasium (idempotent)."""
    for env_id, scene in SCENES.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=scene.entry_point,
                         max_episode_steps=scene.max_episode_steps)


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """``gym.spec`` that also takes Gymnasium's ``package.module:EnvName-v0`` form (as
    ``gym.make`` does): the module, which registers the env when imported, is imported."""
    module, _, name = env_id.rpartition(":")
    if module:
        importlib.import_module(module)
    return gym.spec(name)


def is_mujoco(env_id: str) -> bool:
    """A Gymnasium MuJoCo env (takes width/height, xml_file and camera_name)."""
    if env_id in SCENES:
        return env_id == "vlmrm/Humanoid-v0"
    entry = env_spec(env_id).entry_point
    return isinstance(entry, str) and ".mujoco" in entry


register_scenes()
