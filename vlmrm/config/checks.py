"""Config checks beyond types: ranges, prompts, known backends and env ids, scene options.

Every failure is a :class:`ConfigError` whose message names the key, the value and the fix.
"""

from __future__ import annotations

from pathlib import Path

from vlmrm.config.schema import (
    CRITIC_LOSSES,
    PRECISIONS,
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


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` for the first value that cannot work."""
    _validate_reward(cfg.reward)
    _validate_agent(cfg.agent)
    _validate_env(cfg.env)
    require(cfg.logging.checkpoint_every >= 1,
            f"logging.checkpoint_every={cfg.logging.checkpoint_every} must be >= 1.")
    require(cfg.logging.video_every >= 0,
            f"logging.video_every={cfg.logging.video_every} must be >= 0 (0 disables videos).")
    require(cfg.logging.monitor_window >= 4,
            f"logging.monitor_window={cfg.logging.monitor_window} must be >= 4 episodes: a "
            "trend needs a few points (20 is the default).")
    require(cfg.logging.monitor_frames >= 1,
            f"logging.monitor_frames={cfg.logging.monitor_frames} must be >= 1.")


def _validate_reward(r: RewardConfig) -> None:
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
    require(all(p.strip() for p in r.negative_prompts),
            f"reward.negative_prompts={list(r.negative_prompts)} holds an empty prompt; remove "
            "it, or leave the list empty.")
    _check_transform(r)
    backend_entry(r.backend)


def _check_transform(r: RewardConfig) -> None:
    """reward.transform through the torch-free spec parser; alpha set twice is refused."""
    from vlmrm.reward.spec import parse_transform

    if r.transform is None:
        return
    require(r.alpha == RewardConfig().alpha,
            f"reward.alpha={r.alpha} and reward.transform are both set, but reward.alpha only "
            "configures the default transform. Put alpha into the goal_baseline item, e.g. "
            f"reward.transform='[{{name: goal_baseline, alpha: {r.alpha}}}]', and drop "
            "reward.alpha (or drop reward.transform).")
    try:
        parse_transform(r.transform)
    except ValueError as err:
        raise ConfigError(f"{err} Fix reward.transform in the YAML file or override; "
                          "`vlmrm fit --help` lists the formulas and their parameters.") from None


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
    require(a.critic_loss in CRITIC_LOSSES,
            f"agent.critic_loss={a.critic_loss!r} must be one of {list(CRITIC_LOSSES)}.")


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
        supported = ("textured", "camera", "xml") if is_mujoco(e.id) else ()
    for name in ("textured", "camera", "xml"):
        value = getattr(e, name)
        require(value is None or name in supported,
                f"env.{name}={value!r} does not apply to env.id={e.id!r}: only "
                f"{_takers(name)} take it. Remove env.{name}, or pick one of those ids.")
    require(e.camera is None or bool(e.camera.strip()),
            "env.camera is empty. Use env.camera=paper, env.camera=stock or a camera name.")
    if e.xml is not None:
        require(Path(e.xml).expanduser().is_file() and e.xml.endswith(".xml"),
                f"env.xml={e.xml!r} is not an existing MJCF file. Give the path of your "
                "MuJoCo model file, e.g. env.xml=scenes/my_humanoid.xml.")


def _takers(option: str) -> str:
    from vlmrm.scenes import SCENES

    ids = [k for k, scene in SCENES.items() if option in scene.options]
    return f"{', '.join(ids)} and Gymnasium MuJoCo envs (Humanoid-v5, Ant-v5, ...)"
