"""Structured configuration: the dataclasses are the schema and hold every default.

YAML files and ``key=value`` overrides only change fields that exist here; anything
else is a :class:`ConfigError`. Field docs are the comments next to each field.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vlmrm.errors import ConfigError
from vlmrm.registry import GROUND_TRUTH, check_backend_name


@dataclass
class EnvConfig:
    # Gymnasium id; it must render with render_mode="rgb_array".
    id: str = "CartPole-v1"
    # Fixed episode length in env steps; None keeps the env's own time limit.
    episode_length: int | None = None
    # False removes early termination (the paper's setting): episodes last episode_length.
    terminate_early: bool = True
    # Number of environments collected from at once.
    num_envs: int = 1
    # Run the envs in worker processes (ParallelEnv) instead of one after another.
    parallel: bool = False
    # Render size in pixels for envs that accept width/height (MuJoCo); None means the
    # reward model's own input size. Other envs render natively and the backend resizes.
    render_size: int | None = None
    # Extra keyword arguments for gymnasium.make.
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Scene look, for the vlmrm/ scenes and MuJoCo envs: true = textured (sky box, tiled
    # floor, textured body, light from above; MountainCar: a realistic picture), false = the
    # stock look, null = the scene's default (textured for vlmrm/Humanoid-v0 and
    # vlmrm/MountainCarContinuous-v0, stock for other ids).
    textured: bool | None = None
    # Render camera of MuJoCo envs: "paper" (track the torso: distance 3.5, look-at
    # (0, 0, 1), elevation -10, azimuth 180), "stock" (the env's own view), or the name of a
    # camera in the model file; null = the scene's default ("paper" for vlmrm/Humanoid-v0).
    camera: str | None = None
    # Your own MuJoCo model file (MJCF) for a MuJoCo env id (vlmrm/Humanoid-v0, Humanoid-v5,
    # Ant-v5, ...); env.textured and env.camera are applied on top of it. Its bodies,
    # joints and actuators must still suit the env's observation and reward code.
    xml: str | None = None


@dataclass
class RewardConfig:
    # Registered backend name (see `vlmrm backends`), or "ground_truth" for the env's reward.
    backend: str = "open_clip"
    # Model name in the backend's own convention, e.g. "ViT-B-32/laion2b_s34b_b79k".
    model: str = "ViT-B-32/laion2b_s34b_b79k"
    # False builds the architecture with random weights (tests, timing): never a real reward.
    pretrained: bool = True
    # Prompts describing the goal; their normalised embeddings are averaged.
    goal_prompts: list[str] = field(default_factory=list)
    # Prompts describing the scene without the goal (the baseline b).
    baseline_prompts: list[str] = field(default_factory=list)
    # Goal-baseline regularization strength in [0, 1]; 0 is plain cosine similarity.
    alpha: float = 0.0
    # Frames per forward pass of the image encoder.
    batch_size: int = 32
    # "auto" (the trainer's device), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    # Reward-model weights precision: "32", "bf16" or "16".
    precision: str = "32"
    # Where model weights are looked up and downloaded; None uses the library default.
    cache_dir: str | None = None
    # Optional model-architecture JSON to register before loading (custom open_clip models).
    model_config: str | None = None


@dataclass
class AgentConfig:
    # Environment steps to collect in total (all envs, all ranks).
    total_env_steps: int = 100_000
    # Random-action steps collected before the first update.
    learning_starts: int = 1_000
    # Steps per env collected between training phases.
    train_freq: int = 1
    # Gradient updates after each collection phase.
    gradient_steps: int = 1
    # Replay minibatch size.
    batch_size: int = 256
    # Replay buffer capacity in transitions.
    buffer_size: int = 1_000_000
    # Discount factor.
    gamma: float = 0.99
    # Polyak coefficient of the target critics.
    tau: float = 0.005
    # Adam learning rate (actor, critics and entropy coefficient).
    learning_rate: float = 3e-4
    # Entropy coefficient: "auto" learns it, a number fixes it.
    ent_coef: str = "auto"
    # Target entropy as a fraction of the maximum (discrete actions) or "auto" (-dim(A)).
    target_entropy_weight: float = 0.98
    # Critic regression loss: "smooth_l1" (Huber, TorchRL's default) or "l2".
    critic_loss: str = "smooth_l1"
    # Hidden layer sizes of actor and critic MLPs.
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    # Run deterministic evaluation episodes every this many env steps (0 disables).
    eval_every: int = 10_000
    # Evaluation episodes per evaluation.
    eval_episodes: int = 5
    # torch intra-op threads of this process; 1 is fastest on small CPUs (see README).
    num_threads: int | None = 1


@dataclass
class TrainerConfig:
    """Forwarded to ``lightning.Trainer``."""

    # "auto", "cpu", "gpu"/"cuda", ... (Lightning accelerator).
    accelerator: str = "auto"
    # Devices per node: an int, a list of indices, or "auto".
    devices: Any = 1
    # Lightning strategy: "auto", "ddp", "fsdp", ...; each rank collects its own env steps.
    strategy: str = "auto"
    # Nodes for multi-node training (with a cluster launcher such as SLURM or torchrun).
    num_nodes: int = 1
    # Lightning precision of the SAC networks: "32-true", "bf16-mixed", "16-mixed".
    precision: str = "32-true"
    # Show Lightning's progress bar (env steps and returns).
    enable_progress_bar: bool = True


@dataclass
class LoggingConfig:
    # Parent directory of run directories.
    output_dir: str = "runs"
    # Run directory name; None uses "<config name>-<timestamp>".
    run_name: str | None = None
    # Save a checkpoint every this many env steps (plus one at the end).
    checkpoint_every: int = 50_000
    # Record one deterministic evaluation episode every this many env steps, as a
    # TensorBoard video and an mp4 in <run dir>/videos, with each frame's VLM reward (and
    # ground-truth reward and success where the env has them) under it; 0 disables.
    video_every: int = 0


@dataclass
class Config:
    seed: int = 0
    env: EnvConfig = field(default_factory=EnvConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


PRECISIONS = ("32", "bf16", "16")


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (),
                base: dict[str, Any] | None = None) -> Config:
    """Merge ``base`` (e.g. the config saved in a checkpoint), ``path`` (YAML) and
    ``key=value`` overrides onto the defaults, then validate."""
    schema = OmegaConf.structured(Config)
    layers: list[DictConfig] = []
    if base is not None:
        layers.append(OmegaConf.create(base))
    if path is not None:
        layers.append(_read_yaml(Path(path)))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"Override {item!r} is not of the form key=value. "
                "Write for example `agent.total_env_steps=2000`."
            )
    try:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(schema, *layers)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err)) from None
    cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate(cfg)
    return cfg


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist. Pass an existing YAML file, "
                          "for example --config configs/cartpole.yaml.")
    try:
        loaded = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends
        raise ConfigError(f"Config file {str(path)!r} is not valid YAML: {err}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"Config file {str(path)!r} must hold a mapping of config groups.")
    return loaded


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or "?"
    msg = (getattr(err, "msg", None) or str(err)).splitlines()[0].rstrip(".")
    if "not in struct" in str(err) or ("Key '" in msg and "not in" in msg):
        return (f"Unknown config key {key!r}. Check its spelling against the defaults in "
                "vlmrm/config.py (or `vlmrm fit --help`).")
    return f"Bad value for config key {key!r}: {msg}. Fix it in the YAML file or override."


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: Config) -> None:
    """Checks beyond types: ranges, non-empty prompts, known backend and env."""
    _validate_reward(cfg.reward)
    _validate_agent(cfg.agent)
    _validate_env(cfg.env)
    _require(cfg.logging.checkpoint_every >= 1,
             f"logging.checkpoint_every={cfg.logging.checkpoint_every} must be >= 1.")
    _require(cfg.logging.video_every >= 0,
             f"logging.video_every={cfg.logging.video_every} must be >= 0 (0 disables videos).")


def _validate_reward(r: RewardConfig) -> None:
    _require(0.0 <= r.alpha <= 1.0,
             f"reward.alpha={r.alpha} is outside [0, 1]. Use 0 for plain CLIP similarity, "
             "1 for the goal-baseline direction only.")
    if r.backend != GROUND_TRUTH:
        _require(len(r.goal_prompts) > 0 and all(p.strip() for p in r.goal_prompts),
                 f"reward.goal_prompts={list(r.goal_prompts)} must hold at least one non-empty "
                 "prompt, e.g. reward.goal_prompts='[\"a humanoid robot kneeling\"]'.")
        _require(len(r.baseline_prompts) > 0 and all(p.strip() for p in r.baseline_prompts),
                 f"reward.baseline_prompts={list(r.baseline_prompts)} must hold at least one "
                 "non-empty prompt, e.g. reward.baseline_prompts='[\"a humanoid robot\"]'.")
        _require(r.precision in PRECISIONS,
                 f"reward.precision={r.precision!r} is not one of {list(PRECISIONS)}.")
        _require(r.batch_size >= 1, f"reward.batch_size={r.batch_size} must be >= 1.")
        check_backend_name(r.backend)


def _validate_agent(a: AgentConfig) -> None:
    for name in ("total_env_steps", "train_freq", "batch_size", "buffer_size", "eval_episodes"):
        value = getattr(a, name)
        _require(value >= 1, f"agent.{name}={value} must be a positive integer.")
    for name in ("learning_starts", "gradient_steps", "eval_every"):
        value = getattr(a, name)
        _require(value >= 0, f"agent.{name}={value} must be >= 0.")
    _require(0.0 < a.gamma <= 1.0, f"agent.gamma={a.gamma} must be in (0, 1].")
    _require(0.0 < a.tau <= 1.0, f"agent.tau={a.tau} must be in (0, 1].")
    _require(a.learning_rate > 0, f"agent.learning_rate={a.learning_rate} must be > 0.")
    _check_ent_coef(a.ent_coef)
    _require(a.critic_loss in ("smooth_l1", "l2"),
             f"agent.critic_loss={a.critic_loss!r} must be \"smooth_l1\" or \"l2\".")


def _validate_env(e: EnvConfig) -> None:
    _require(e.num_envs >= 1, f"env.num_envs={e.num_envs} must be >= 1.")
    _require(e.episode_length is None or e.episode_length >= 1,
             f"env.episode_length={e.episode_length} must be >= 1 (or null for the env's own).")
    _require(e.terminate_early or e.episode_length is not None,
             "env.terminate_early=false needs env.episode_length: without termination and "
             "without a fixed length, episodes would never end.")
    _check_env_id(e.id)
    _check_scene_options(e)


def _check_ent_coef(value: str) -> None:
    if value == "auto":
        return
    try:
        ok = float(value) > 0
    except ValueError:
        ok = False
    _require(ok, f"agent.ent_coef={value!r} must be \"auto\" or a positive number like 0.1.")


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
        _require(value is None or name in supported,
                 f"env.{name}={value!r} does not apply to env.id={e.id!r}: only "
                 f"{_takers(name)} take it. Remove env.{name}, or pick one of those ids.")
    _require(e.camera is None or bool(e.camera.strip()),
             "env.camera is empty. Use env.camera=paper, env.camera=stock or a camera name.")
    if e.xml is not None:
        _require(Path(e.xml).expanduser().is_file() and e.xml.endswith(".xml"),
                 f"env.xml={e.xml!r} is not an existing MJCF file. Give the path of your "
                 "MuJoCo model file, e.g. env.xml=scenes/my_humanoid.xml.")


def _takers(option: str) -> str:
    from vlmrm.scenes import SCENES

    ids = [k for k, scene in SCENES.items() if option in scene.options]
    return f"{', '.join(ids)} and Gymnasium MuJoCo envs (Humanoid-v5, Ant-v5, ...)"


def describe_schema() -> str:
    """Every config key with its default and the comment documenting it (for --help)."""
    lines = ["  seed = 0  -- global seed (env seeds derive from it)"]
    for group in fields(Config):
        if group.name == "seed":
            continue
        cls = group.default_factory
        docs = _field_comments(cls)
        defaults = cls()
        for f in fields(cls):
            doc = docs.get(f.name, "")
            lines.append(f"  {group.name}.{f.name} = {getattr(defaults, f.name)!r}"
                         + (f"  -- {doc}" if doc else ""))
    return "\n".join(lines)


def _field_comments(cls: type) -> dict[str, str]:
    """The ``# ...`` comment lines directly above each field in the class source."""
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("# "))
            continue
        match = re.match(r"\s{4}(\w+):", line)
        if match:
            docs[match.group(1)] = " ".join(pending)
        pending = []
    return docs


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
