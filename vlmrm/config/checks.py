"""Config checks beyond types: ranges, prompts, known backends and env ids, scene options.

Every failure is a :class:`ConfigError` whose message names the key, the value and the fix.
"""

from __future__ import annotations

from pathlib import Path

from vlmrm.config.schema import (
    ACTIVATIONS,
    CRITIC_LOSSES,
    EPISODE_ENDS,
    PRECISIONS,
    RESIZE_MODES,
    AgentConfig,
    Config,
    EnvConfig,
    RewardConfig,
)
from vlmrm.errors import ConfigError
from vlmrm.registry import GROUND_TRUTH, backend_entry


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def one_of(key: str, value: object, choices: tuple) -> None:
    require(value in choices, f"{key}={value!r} is not one of {list(choices)}.")


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` for the first value that cannot work."""
    _validate_reward(cfg.reward)
    _validate_agent(cfg.agent)
    _validate_env(cfg.env)
    world = static_world_size(cfg)
    if world is not None:
        check_global_split(cfg, world)
    require(cfg.logging.checkpoint_every >= 1,
            f"logging.checkpoint_every={cfg.logging.checkpoint_every} must be >= 1.")
    require(cfg.logging.video_every >= 0,
            f"logging.video_every={cfg.logging.video_every} must be >= 0 (0 disables videos).")


def _validate_reward(r: RewardConfig) -> None:
    if r.resize is not None:
        one_of("reward.resize", r.resize, RESIZE_MODES)
    require(0.0 <= r.alpha <= 1.0,
            f"reward.alpha={r.alpha} is outside [0, 1]. Use 0 for plain CLIP similarity, "
            "1 for the goal-baseline direction only.")
    if r.backend == GROUND_TRUTH:
        return
    for name, example in (("goal_prompts", "a humanoid robot kneeling"),
                          ("baseline_prompts", "a humanoid robot")):
        prompts = list(getattr(r, name))
        require(len(prompts) > 0 and all(p.strip() for p in prompts),
                f"reward.{name}={prompts} must hold at least one non-empty prompt, e.g. "
                f"reward.{name}='[\"{example}\"]'.")
    require(r.precision in PRECISIONS,
            f"reward.precision={r.precision!r} is not one of {list(PRECISIONS)}.")
    require(r.batch_size >= 1, f"reward.batch_size={r.batch_size} must be >= 1.")
    backend_entry(r.backend)


def _validate_agent(a: AgentConfig) -> None:
    for name in ("total_env_steps", "train_freq", "batch_size", "buffer_size", "eval_episodes"):
        value = getattr(a, name)
        require(value >= 1, f"agent.{name}={value} must be a positive integer.")
    for name in ("learning_starts", "gradient_steps", "eval_every"):
        value = getattr(a, name)
        require(value >= 0, f"agent.{name}={value} must be >= 0.")
    require(0.0 < a.gamma <= 1.0, f"agent.gamma={a.gamma} must be in (0, 1].")
    require(0.0 < a.tau <= 1.0, f"agent.tau={a.tau} must be in (0, 1].")
    require(a.learning_rate > 0, f"agent.learning_rate={a.learning_rate} must be > 0.")
    _check_ent_coef(a.ent_coef)
    one_of("agent.critic_loss", a.critic_loss, CRITIC_LOSSES)
    one_of("agent.activation", a.activation, ACTIVATIONS)


def _check_ent_coef(value: str) -> None:
    if value == "auto":
        return
    try:
        ok = float(value) > 0
    except ValueError:
        ok = False
    require(ok, f"agent.ent_coef={value!r} must be \"auto\" or a positive number like 0.1.")


def _validate_env(e: EnvConfig) -> None:
    require(e.num_envs >= 1, f"env.num_envs={e.num_envs} must be >= 1.")
    one_of("env.episode_end", e.episode_end, EPISODE_ENDS)
    require(e.episode_length is None or e.episode_length >= 1,
            f"env.episode_length={e.episode_length} must be >= 1 (or null for the env's own).")
    require(e.terminate_early or e.episode_length is not None,
            "env.terminate_early=false needs env.episode_length: without termination and "
            "without a fixed length, episodes would never end.")
    _check_env_id(e.id)
    _check_scene_options(e)


def _check_env_id(env_id: str) -> None:
    import gymnasium as gym

    from vlmrm.scenes import SCENES

    try:
        gym.spec(env_id)
    except gym.error.Error:
        known = list(SCENES) + sorted(k for k in gym.registry if "/" not in k)
        raise ConfigError(
            f"env.id={env_id!r} is not a registered Gymnasium environment. "
            f"Known ids include: {', '.join(known[:28])}, ..."
        ) from None


def _check_scene_options(e: EnvConfig) -> None:
    """env.textured / env.camera / env.xml only where the scene can honour them."""
    from vlmrm.scenes import SCENES, is_mujoco

    if e.id in SCENES:
        supported = SCENES[e.id].options
    else:
        supported = SCENE_OPTIONS if is_mujoco(e.id) else ()
    for name in SCENE_OPTIONS:
        value = getattr(e, name)
        require(value is None or name in supported,
                f"env.{name}={value!r} does not apply to env.id={e.id!r}: only "
                f"{_takers(name)} take it. Remove env.{name}, or pick one of those ids.")
    require(e.camera is None or bool(e.camera.strip()),
            "env.camera is empty. Use env.camera=paper, tracking, stock or a camera name.")
    if e.texture_dir is not None:
        require(bool(e.texture_dir.strip()) and Path(e.texture_dir).expanduser().is_dir(),
                f"env.texture_dir={e.texture_dir!r} is not an existing folder. Give a folder "
                "holding sky.png, floor.png and/or body.png.")
        require(e.textured is not False,
                f"env.texture_dir={e.texture_dir!r} dresses the textured scene, but "
                "env.textured=false. Drop one of the two.")
    if e.xml is not None:
        require(Path(e.xml).expanduser().is_file() and e.xml.endswith(".xml"),
                f"env.xml={e.xml!r} is not an existing MJCF file. Give the path of your "
                "MuJoCo model file, e.g. env.xml=scenes/my_humanoid.xml.")


#: Scene options a Gymnasium MuJoCo env takes; the vlmrm/ scenes list their own.
SCENE_OPTIONS = ("textured", "camera", "xml", "texture_dir")


def _takers(option: str) -> str:
    from vlmrm.scenes import SCENES

    ids = [k for k, scene in SCENES.items() if option in scene.options]
    return f"{', '.join(ids)} and Gymnasium MuJoCo envs (Humanoid-v5, Ant-v5, ...)"


def static_world_size(cfg: Config) -> int | None:
    """Ranks the trainer settings ask for, when they say it without asking the hardware."""
    devices = cfg.trainer.devices
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        count = devices
    else:  # "auto", -1, "0,1" strings: Lightning resolves them; checked again at fit time
        return None
    return count * cfg.trainer.num_nodes


#: Quantities counted over all ranks together, each rank taking an equal share.
GLOBAL_QUANTITIES = ("env.num_envs", "agent.batch_size", "agent.learning_starts")


def check_global_split(cfg: Config, world_size: int) -> None:
    """Under DDP every rank takes 1/world_size of the global quantities: it must divide."""
    if world_size <= 1:
        return
    values = {"env.num_envs": cfg.env.num_envs, "agent.batch_size": cfg.agent.batch_size,
              "agent.learning_starts": cfg.agent.learning_starts}
    for key, value in values.items():
        require(value % world_size == 0,
                f"{key}={value} does not split evenly over {world_size} ranks "
                f"(trainer.devices x trainer.num_nodes): {key} counts all ranks together and "
                f"each rank takes an equal share. Use a multiple of {world_size}, e.g. "
                f"{key}={max(world_size, value // world_size * world_size)}.")
