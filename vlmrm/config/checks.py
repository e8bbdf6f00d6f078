"""Config checks beyond types: ranges, prompts, paths, known backends and env ids, scene options.

Every failure is a :class:`ConfigError` whose message names the key, the value and the fix.
Nothing here imports torch or Lightning (config errors must answer at once); what only a
library can judge (a CUDA device that is absent, a strategy name, kwargs ``gym.make``
rejects) is checked when the run is built, still before its directory is created.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from vlmrm.config.reward_checks import validate_reward
from vlmrm.config.rules import as_path, one_of, require
from vlmrm.config.schema import (
    ACTION_NOISES,
    ACTIVATIONS,
    COLLECTORS,
    CRITIC_LOSSES,
    EPISODE_ENDS,
    LOSS_IMPLS,
    TRAINER_PRECISIONS,
    AgentConfig,
    Config,
    EnvConfig,
    LoggingConfig,
    TrainerConfig,
)
from vlmrm.errors import ConfigError

MAX_SEED = 2**32 - 1  # what numpy (and Lightning's seed_everything) accept
MIN_RENDER, MAX_RENDER = 8, 4096
#: gym.make arguments vlmrm sets itself, and the config key to use instead.
RESERVED_ENV_KWARGS = {"render_mode": "(vlmrm renders rgb_array frames itself)",
                       "max_episode_steps": "(use env.episode_length)",
                       "xml_file": "(use env.xml)"}


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` for the first value that cannot work."""
    require(0 <= cfg.seed <= MAX_SEED, f"seed={cfg.seed} must be in [0, {MAX_SEED}].")
    validate_reward(cfg.reward)
    _validate_agent(cfg.agent)
    _validate_env(cfg.env)
    world = static_world_size(cfg)
    if world is not None:
        check_global_split(cfg, world)
    _validate_trainer(cfg.trainer)
    _validate_logging(cfg.logging)


def _validate_agent(a: AgentConfig) -> None:
    for name in ("total_env_steps", "train_freq", "batch_size", "buffer_size", "eval_episodes"):
        value = getattr(a, name)
        require(value >= 1, f"agent.{name}={value} must be a positive integer.")
    for name in ("learning_starts", "gradient_steps", "eval_every"):
        value = getattr(a, name)
        require(value >= 0, f"agent.{name}={value} must be >= 0.")
    require(a.buffer_size >= a.batch_size,
            f"agent.buffer_size={a.buffer_size} is smaller than agent.batch_size="
            f"{a.batch_size}: a minibatch would repeat transitions. Raise agent.buffer_size.")
    require(0.0 < a.gamma <= 1.0, f"agent.gamma={a.gamma} must be in (0, 1].")
    require(0.0 < a.tau <= 1.0, f"agent.tau={a.tau} must be in (0, 1].")
    require(0 < a.learning_rate < math.inf,
            f"agent.learning_rate={a.learning_rate} must be a positive finite number.")
    require(0.0 <= a.target_entropy_weight <= 1.0,
            f"agent.target_entropy_weight={a.target_entropy_weight} must be in [0, 1] (a "
            "fraction of the maximum entropy).")
    _check_ent_coef(a.ent_coef)
    one_of("agent.critic_loss", a.critic_loss, CRITIC_LOSSES)
    one_of("agent.activation", a.activation, ACTIVATIONS)
    if a.action_noise is not None:
        one_of("agent.action_noise", a.action_noise, ACTION_NOISES)
    require(a.action_noise_sigma > 0,
            f"agent.action_noise_sigma={a.action_noise_sigma} must be > 0.")
    require(0 < a.action_noise_theta <= 1,
            f"agent.action_noise_theta={a.action_noise_theta} must be in (0, 1].")
    one_of("agent.loss_impl", a.loss_impl, LOSS_IMPLS)
    one_of("agent.collector", a.collector, COLLECTORS)
    require(not (a.compile and a.loss_impl == "torchrl"),
            "agent.compile=true needs agent.loss_impl=fast: TorchRL's SAC loss recompiles on "
            "every call and runs no faster compiled. Use agent.loss_impl=fast, or "
            "agent.compile=false.")
    require(all(h >= 1 for h in a.hidden_sizes),
            f"agent.hidden_sizes={list(a.hidden_sizes)} must hold positive layer widths, "
            "e.g. agent.hidden_sizes=[256,256] ([] for linear networks).")
    require(a.num_threads is None or a.num_threads >= 1,
            f"agent.num_threads={a.num_threads} must be >= 1 (or null for torch's default).")


def _check_ent_coef(value: str) -> None:
    if value == "auto":
        return
    try:
        ok = 0 < float(value) < math.inf
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
    require(e.render_size is None or MIN_RENDER <= e.render_size <= MAX_RENDER,
            f"env.render_size={e.render_size} must be in [{MIN_RENDER}, {MAX_RENDER}] pixels "
            "(or null for the reward model's input size).")
    for key in e.kwargs:
        require(key not in RESERVED_ENV_KWARGS,
                f"env.kwargs.{key} is set by vlmrm {RESERVED_ENV_KWARGS.get(key, '')}; remove "
                f"it from env.kwargs.")
    _check_env_id(e.id)
    _check_scene_options(e)


def _check_env_id(env_id: str) -> None:
    import gymnasium as gym

    from vlmrm.scenes import SCENES

    module, _, name = env_id.rpartition(":")
    if module:
        _import_env_module(env_id, module)
    try:
        gym.spec(name)
    except gym.error.Error:
        if module:
            raise ConfigError(
                f"env.id={env_id!r}: importing {module!r} did not register {name!r} with "
                f"Gymnasium. Check the id that module registers (gymnasium.register(id=...))."
            ) from None
        known = list(SCENES) + sorted(k for k in gym.registry if "/" not in k)
        raise ConfigError(
            f"env.id={env_id!r} is not a registered Gymnasium environment. "
            f"Known ids include: {', '.join(known[:28])}, ..."
        ) from None


def _import_env_module(env_id: str, module: str) -> None:
    """Gymnasium's ``package.module:EnvName-v0``: the module (installed code only, named
    by a dotted name) is imported, as ``gym.make`` would, so that it registers the env."""
    import importlib

    require(MODULE_NAME.fullmatch(module) is not None,
            f"env.id={env_id!r}: {module!r} is not a module name. Use Gymnasium's "
            "'package.module:EnvName-v0' form, e.g. env.id=my_envs.reach:Reach-v0.")
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"env.id={env_id!r}: no module {err.name or module!r} is installed here, so "
            f"{module!r} cannot be imported to register the env. Install the package that "
            "provides it in this Python environment (pip install -e path/to/it), or fix the "
            "module name.") from None
    except Exception as err:  # the module's own code failed
        raise ConfigError(
            f"env.id={env_id!r}: importing {module!r} failed with {type(err).__name__}: "
            f"{' '.join(str(err).split())}. Fix that module.") from None


#: A dotted Python module name (``package.module``).
MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


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
        xml = as_path("env.xml", e.xml, "scenes/my_humanoid.xml")
        require(xml.is_file() and e.xml.endswith(".xml"),
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
GLOBAL_QUANTITIES = ("env.num_envs", "agent.batch_size", "agent.learning_starts",
                     "agent.buffer_size")


def check_global_split(cfg: Config, world_size: int) -> None:
    """Under DDP every rank takes 1/world_size of the global quantities: it must divide."""
    if world_size <= 1:
        return
    values = {"env.num_envs": cfg.env.num_envs, "agent.batch_size": cfg.agent.batch_size,
              "agent.learning_starts": cfg.agent.learning_starts,
              "agent.buffer_size": cfg.agent.buffer_size}
    for key, value in values.items():
        require(value % world_size == 0,
                f"{key}={value} does not split evenly over {world_size} ranks "
                f"(trainer.devices x trainer.num_nodes): {key} counts all ranks together and "
                f"each rank takes an equal share. Use a multiple of {world_size}, e.g. "
                f"{key}={max(world_size, value // world_size * world_size)}.")


def _validate_trainer(t: TrainerConfig) -> None:
    for name in ("accelerator", "strategy"):
        value = getattr(t, name)
        require(bool(value.strip()), f"trainer.{name} is empty. Use trainer.{name}=auto.")
    _check_strategy(t.strategy)
    require(t.num_nodes >= 1, f"trainer.num_nodes={t.num_nodes} must be >= 1.")
    require(t.precision in TRAINER_PRECISIONS,
            f"trainer.precision={t.precision!r} is not a Lightning precision. Use one of "
            f"{list(TRAINER_PRECISIONS)}.")
    require(_devices_ok(t.devices),
            f"trainer.devices={t.devices!r} is not a device count or list. Use a positive "
            "integer, -1 (all), 'auto', or a list of device indices such as [0, 1].")


def _check_strategy(strategy: str) -> None:
    """Only strategies that keep every rank's whole module as built: the update reads the
    networks' original parameter tensors (vlmrm.sac.fast_loss, SoftUpdate), which sharding
    strategies (FSDP, DeepSpeed, model parallel) replace with shards of their own."""
    name = strategy.strip().lower()
    require(name in ("auto", "single_device") or name.startswith("ddp"),
            f"trainer.strategy={strategy!r} is not supported: vlmrm's SAC update reads the "
            "networks' parameter tensors as built, and sharding strategies (FSDP, DeepSpeed, "
            "model parallel) replace them, so the update would train tensors the strategy no "
            "longer uses. SAC's networks are small enough to copy whole: use "
            "trainer.strategy=ddp for several devices, or auto.")


def _devices_ok(value: Any) -> bool:
    """The forms Lightning accepts: int >= 1 or -1, 'auto', '2', '0,1', [0, 1]."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 1 or value == -1
    if isinstance(value, str):
        text = value.strip()
        if text in ("auto", "-1"):
            return True
        if text.isdecimal():
            return int(text) >= 1
        return "," in text and re.fullmatch(r"\d+(\s*,\s*\d+)*\s*,?", text) is not None
    if isinstance(value, (list, tuple)):
        ints = [v for v in value if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
        return len(ints) == len(value) > 0 and len(set(ints)) == len(ints)
    return False


def _validate_logging(g: LoggingConfig) -> None:
    out = as_path("logging.output_dir", g.output_dir, "runs")
    require(not out.exists() or out.is_dir(),
            f"logging.output_dir={g.output_dir!r} exists but is not a directory.")
    if g.run_name is not None:
        name = g.run_name
        require(name not in (".", "..") and re.fullmatch(r"[^/\\\x00-\x1f]+", name) is not None
                and len(name.encode()) <= 200,
                f"logging.run_name={name!r} must be one directory name (no '/', no control "
                "characters, at most 200 bytes), e.g. logging.run_name=kneeling-seed3.")
    require(g.checkpoint_every >= 1,
            f"logging.checkpoint_every={g.checkpoint_every} must be >= 1.")
    require(g.stop_timeout_s > 0,
            f"logging.stop_timeout_s={g.stop_timeout_s} must be > 0 (seconds from SIGTERM to a "
            "resumable checkpoint, e.g. 60).")
    require(g.keep_checkpoints is None or g.keep_checkpoints >= 1,
            f"logging.keep_checkpoints={g.keep_checkpoints} must be >= 1 (or null to keep "
            "every step checkpoint).")
    require(g.video_every >= 0,
            f"logging.video_every={g.video_every} must be >= 0 (0 disables videos).")
    require(g.monitor_window >= 7,
            f"logging.monitor_window={g.monitor_window} must be >= 7 points: over fewer, even "
            "a perfectly steady trend happens by chance more often than the monitor's "
            "false-alarm rate of 1e-3 (20 is the default).")
    require(g.monitor_frames >= 1, f"logging.monitor_frames={g.monitor_frames} must be >= 1.")
