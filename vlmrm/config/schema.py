"""The config schema: dataclasses that hold every default and document every field.

Each field's ``help`` metadata is what ``vlmrm fit --help`` prints, so the documentation
lives on the field itself and cannot drift from it. This module imports nothing heavy:
the CLI reads it to answer ``--help`` without loading torch.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

#: Reward-model weight precisions (``reward.precision``); the backend maps them to dtypes.
PRECISIONS = ("32", "bf16", "16")
#: What ``reward.precision`` accepts: a precision, or ``auto`` (vlmrm.precision picks one).
PRECISION_CHOICES = ("auto", *PRECISIONS)
CRITIC_LOSSES = ("smooth_l1", "l2")
#: ``agent.loss_impl`` values: vlmrm's plain-torch SAC losses, or TorchRL's (the reference).
LOSS_IMPLS = ("fast", "torchrl")
#: ``agent.collector`` values: where overlapped collection runs.
COLLECTORS = ("thread", "process")
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu")
EPISODE_ENDS = ("truncate", "terminate")
ACTION_NOISES = ("normal", "ou")
RESIZE_MODES = ("crop", "squash")
#: ``trainer.precision`` values Lightning 2.x accepts (checked here so that a typo is a config
#: error before anything is loaded).
TRAINER_PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "16", "bf16-mixed", "bf16",
                      "16-true", "bf16-true", "transformer-engine", "transformer-engine-float16")
#: Default of ``logging.keep_checkpoints``.
KEEP_CHECKPOINTS = 5


def opt(default: Any, help: str) -> Any:
    """A documented dataclass field (mutable defaults are copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def group(cls: type, help: str) -> Any:
    return field(default_factory=cls, metadata={"help": help})


@dataclass
class EnvConfig:
    id: str = opt("CartPole-v1", "Gymnasium id; it must render with render_mode='rgb_array'.")
    episode_length: int | None = opt(
        None, "Fixed episode length in env steps; null keeps the env's own time limit.")
    terminate_early: bool = opt(
        True, "false removes early termination (the paper's setting): episodes last "
        "episode_length.")
    episode_end: str = opt(
        "truncate", "How the end of a fixed-length episode (env.episode_length, or the env's "
        "own time limit) enters the SAC target: 'truncate' = a time-limit truncation, the value "
        "of the last state is bootstrapped (the standard choice); 'terminate' = a terminal "
        "state, no bootstrap (what the paper's code did: its envs set terminated=True at "
        "episode_length).")
    num_envs: int = opt(
        1, "Environments collected from at once, over all ranks: under DDP each of N ranks "
        "runs num_envs / N of them (the paper's humanoid run: 32).")
    parallel: bool = opt(
        False, "Run the envs in worker processes (Gymnasium's AsyncVectorEnv; a worker holds "
        "Gymnasium, MuJoCo and numpy, not torch) instead of one after another.")
    render_size: int | None = opt(
        None, "Render size in pixels for envs that accept width/height (MuJoCo); null means "
        "the reward model's own input size. Other envs render natively and the backend resizes.")
    kwargs: dict[str, Any] = opt({}, "Extra keyword arguments for gymnasium.make.")
    textured: bool | None = opt(
        None, "Scene look, for the vlmrm/ scenes and MuJoCo envs: true = textured (sky box, "
        "tiled floor, textured body, light from above; MountainCar: a realistic picture), "
        "false = the stock look, null = the scene's default (textured for vlmrm/Humanoid-v0 "
        "and vlmrm/MountainCarContinuous-v0, stock for other ids).")
    camera: str | None = opt(
        None, "Render camera of MuJoCo envs: 'paper' (the paper code's view: fixed, 3.5 from "
        "look-at (0, 0, 1), elevation -10, azimuth 180; its trackbodyid had no effect on "
        "MuJoCo's free camera), 'tracking' (that view following the torso), 'stock' (the "
        "env's own view), or the name of a camera in the model file; null = the scene's "
        "default ('paper' for vlmrm/Humanoid-v0).")
    texture_dir: str | None = opt(
        None, "A folder of your own scene pictures for the textured MuJoCo look: sky.png "
        "(square), floor.png, body.png (square); a missing one keeps the painted default. "
        "Needs env.textured (null counts as true).")
    xml: str | None = opt(
        None, "Your own MuJoCo model file (MJCF) for a MuJoCo env id (vlmrm/Humanoid-v0, "
        "Humanoid-v5, Ant-v5, ...); env.textured and env.camera are applied on top of it. Its "
        "bodies, joints and actuators must still suit the env's observation and reward code.")


@dataclass
class RewardConfig:
    backend: str = opt(
        "open_clip", "Registered backend name (see `vlmrm backends`), or 'ground_truth' for "
        "the env's reward.")
    model: str = opt(
        "ViT-B-32/laion2b_s34b_b79k",
        "Model name in the backend's own convention, e.g. 'ViT-B-32/laion2b_s34b_b79k'.")
    pretrained: bool = opt(
        True, "false builds the architecture with random weights (tests, timing): never a "
        "real reward.")
    goal_prompts: list[str] = opt(
        [], "Prompts describing the goal; their normalised embeddings are averaged.")
    baseline_prompts: list[str] = opt(
        [], "Prompts describing the scene without the goal (the baseline b).")
    alpha: float = opt(
        0.0, "Goal-baseline regularization strength in [0, 1]; 0 is plain cosine similarity. "
        "Shorthand for reward.transform=[{name: goal_baseline, alpha: <alpha>}]; with "
        "reward.transform set, a non-zero alpha must equal its goal_baseline item's.")
    transform: list[Any] | None = opt(
        None, "Reward formula chain, an ordered list of {name: ..., <param>: ...} items: first "
        "one embedding formula, then any scalar transforms, e.g. "
        "'[{name: softmax, temperature: 0.05}, {name: threshold, value: 0.5}]'. `vlmrm fit "
        "--help` lists the registered formulas and their parameters. null = "
        "[{name: goal_baseline, alpha: <reward.alpha>}], the paper's reward; a loaded config "
        "holds the resolved chain, every parameter filled in. running_norm's statistics update "
        "on training batches only and are saved in checkpoints.")
    negative_prompts: list[str] = opt(
        [], "Prompts for what the goal is not; softmax adds them as a class and contrastive "
        "subtracts their similarity (instead of the baseline's); vlmrm evaluate-reward's prompt "
        "check compares the goal against them.")
    resize: str | None = opt(
        None, "How a frame becomes the encoder's square input: 'crop' (resize the short side, "
        "centre-crop: CLIP's own preprocessing), 'squash' (resize the whole frame to the square, "
        "no crop: what the paper's code did), or null for the model's own default.")
    window: int | None = opt(
        None, "Video backends (kind 'video', e.g. xclip): frames per reward, the last "
        "reward.window frames of each env (stride 1: one reward per env step); an episode's "
        "first steps repeat its first frame to fill the window. null = the model's own frame "
        "count. Image and judge backends score one frame.")
    question: str | None = opt(
        None, "Judge backends (kind 'judge', e.g. hf_judge): the question asked about each "
        "frame, with {goal} replaced by each goal prompt (the rewards of several goal prompts "
        "are averaged). null = the judge formula's own question (see `vlmrm fit --help`).")
    batch_size: int = opt(32, "Frames per forward pass of the image encoder.")
    stream_frames: int = opt(
        16, "With agent.overlap: encode a batch's frames in passes of this many (rounded down "
        "to whole env steps of this rank's envs, at least one step, at most reward.batch_size; "
        "reward.batch_size with reward.compile) as soon as they are rendered, on a scoring "
        "thread beside the renderers and the learner, instead of all at once after the last "
        "step. Smaller passes leave less to score after the last step; a GPU may want larger "
        "ones. 0 scores each batch once it is complete.")
    device: str = opt("auto", "'auto' (the trainer's device), 'cpu', 'cuda', 'cuda:N', 'mps', "
                      "'xpu', 'xpu:N'.")
    precision: str = opt(
        "auto", f"Reward-model weights precision: one of {list(PRECISION_CHOICES)}. 'auto' picks "
        "bf16 where the device runs it fast (CUDA GPUs with native bf16; CPUs with bf16 "
        "matmul instructions, e.g. AVX512-BF16 or AMX) and 32 elsewhere; a run prints the "
        "choice and its reason and stores both in its config.yaml.")
    compile: bool = opt(
        False, "torch.compile the image encoder (needs a C++ compiler on CPU; runs eager with a "
        "warning if compiling fails). Pays off on a GPU for long runs: the first batch takes "
        "seconds to minutes longer while it compiles; every chunk is padded to "
        "reward.batch_size so that one compiled graph serves all of them.")
    cache_dir: str | None = opt(
        None, "Where model weights are looked up and downloaded; null uses the library "
        "default.")
    model_config: str | None = opt(
        None, "Optional model-architecture JSON to register before loading (custom open_clip "
        "models).")


@dataclass
class AgentConfig:
    total_env_steps: int = opt(100_000, "Environment steps to collect in total (all envs, "
                               "all ranks).")
    learning_starts: int = opt(
        1_000, "Env steps (all envs, all ranks) collected with random actions before the first "
        "update; updates start once more than this many are collected.")
    train_freq: int = opt(
        1, "Steps of EACH env between training phases, so a phase collects train_freq x "
        "num_envs transitions (Stable-Baselines3's train_freq with vectorised envs: the "
        "paper's train_freq=100 with 32 envs is 3,200 transitions per phase).")
    gradient_steps: int = opt(1, "Gradient updates after each collection phase.")
    batch_size: int = opt(
        256, "Replay minibatch size of one update, over all ranks: under DDP each of N ranks "
        "samples batch_size / N and DDP averages the gradients.")
    buffer_size: int = opt(1_000_000, "Replay buffer capacity in transitions, all ranks "
                           "together: under DDP each rank keeps its share.")
    gamma: float = opt(0.99, "Discount factor.")
    tau: float = opt(0.005, "Polyak coefficient of the target critics.")
    learning_rate: float = opt(3e-4, "Adam learning rate (actor, critics and entropy "
                               "coefficient).")
    ent_coef: str = opt("auto", "Entropy coefficient: 'auto' learns it, a number fixes it.")
    target_entropy_weight: float = opt(
        0.98, "Target entropy as a fraction of the maximum (discrete actions); continuous "
        "actions use -dim(A).")
    critic_loss: str = opt(
        "smooth_l1", "Critic regression loss: 'smooth_l1' (Huber, TorchRL's default) or 'l2'.")
    hidden_sizes: list[int] = opt([256, 256], "Hidden layer sizes of actor and critic MLPs "
                                  "([] makes them linear).")
    activation: str = opt(
        "relu", f"Hidden-layer activation of actor and critic MLPs: one of {list(ACTIVATIONS)} "
        "(relu: Stable-Baselines3's MlpPolicy, CleanRL and TorchRL's SAC example).")
    action_noise: str | None = opt(
        None, "Extra exploration noise on continuous actions while collecting (never in "
        "evaluation): null, 'normal' (independent Gaussian noise of std action_noise_sigma) or "
        "'ou' (Ornstein-Uhlenbeck: noise += -action_noise_theta * noise + action_noise_sigma * "
        "N(0, 1) each step, reset at each episode start; temporally correlated, which finds "
        "MountainCar's flag where independent noise does not). The paper's code offered both "
        "(Stable-Baselines3 action_noise).")
    action_noise_sigma: float = opt(0.5, "Scale of action_noise, in action units.")
    action_noise_theta: float = opt(
        0.15, "Mean reversion of 'ou' noise per step, in (0, 1]: 1/theta is roughly how many "
        "steps a push lasts.")
    overlap: bool = opt(
        True, "Collect the next batch (env steps and rendering) on a background thread while "
        "the current one is scored and learned from. The next batch then comes from the "
        "policy as it was one iteration earlier (a one-batch lag, harmless to off-policy SAC) "
        "and its exploration draws from a random generator of its own; false runs collect -> "
        "score -> update strictly in turn, from torch's global generator (the loop before "
        "overlap existed, reproduced exactly).")
    collector: str = opt(
        "process", "Where overlapped collection (agent.overlap) steps the envs and the "
        "exploring policy: 'process' (a process of its own, started in a few seconds, whose "
        "batches reach the training process through shared memory and are scored there) or "
        "'thread' (a thread of the training process, which takes turns with the learner at "
        "Python's interpreter lock: slower wherever cores are free; docs/scaling.md, \"How fast\"). Both "
        "collect the same batches; each batch crossing between processes costs a round trip, "
        "so 'thread' is a little faster for iterations of one env step without rendering "
        "(Pendulum with train_freq 1: 0.93x against 0.89x SB3's learn()). With "
        "agent.overlap=false collection runs in the training process either way. Scripts "
        "that call vlmrm.commands.fit.fit with 'process' need the usual "
        "`if __name__ == \"__main__\":` guard.")
    eval_every: int = opt(10_000, "Run deterministic evaluation episodes every this many env "
                          "steps (0 disables).")
    eval_episodes: int = opt(5, "Evaluation episodes per evaluation.")
    loss_impl: str = opt(
        "fast", "SAC update implementation: 'fast' (vlmrm's plain-torch losses on the same "
        "TorchRL parameters, all of an iteration's minibatches sampled at once from a per-rank "
        "generator; 1.4-1.8x the update rate of 'torchrl' on CPU) or 'torchrl' (TorchRL's "
        "SACLoss/DiscreteSACLoss and SoftUpdate, one replay sample per update from the global "
        "RNG: the reference implementation, and vlmrm's update before loss_impl existed). "
        "Both compute the same losses; runs differ in which transitions are drawn.")
    compile: bool = opt(
        False, "torch.compile the SAC loss forward (agent.loss_impl=fast only): 2-20 % more "
        "updates/s on CPU, for 15-40 s of compiling at the first update (in every DDP rank); "
        "needs a C++ compiler; runs eager with a warning if compiling fails.")
    num_threads: int | None = opt(
        1, "torch intra-op threads of this process; 1 is fastest on small CPUs (see docs/scaling.md); "
        "null leaves torch's default.")


@dataclass
class TrainerConfig:
    """Forwarded to ``lightning.Trainer``."""

    accelerator: str = opt("auto", "'auto', 'cpu', 'gpu'/'cuda', ... (Lightning accelerator).")
    devices: Any = opt(1, "Devices per node: an int, a list of indices, or 'auto'.")
    strategy: str = opt("auto", "Lightning strategy: 'auto' or a DDP variant ('ddp', ...); "
                        "each rank collects its own env steps. Sharding strategies (FSDP, "
                        "DeepSpeed) are refused: the SAC update needs the networks whole.")
    num_nodes: int = opt(1, "Nodes for multi-node training (with a cluster launcher such as "
                         "SLURM or torchrun).")
    precision: str = opt("32-true", "Lightning precision of the SAC networks: '32-true', "
                         "'bf16-mixed', '16-mixed', ... (any Lightning precision).")
    enable_progress_bar: bool = opt(True, "Show Lightning's progress bar (env steps and "
                                    "returns).")


@dataclass
class LoggingConfig:
    output_dir: str = opt("runs", "Parent directory of run directories.")
    run_name: str | None = opt(None, "Run directory name; null uses "
                               "'<config name>-<timestamp>' (with -2, -3, ... if taken). An "
                               "existing name is refused: runs never share a directory.")
    checkpoint_every: int = opt(50_000, "Save a checkpoint every this many env steps (plus "
                                "one at the end).")
    keep_checkpoints: int | None = opt(
        KEEP_CHECKPOINTS, "Keep the newest this many step-N.ckpt files (older ones are deleted "
        "once a newer one is complete; last.ckpt is always kept); null keeps all.")
    video_every: int = opt(
        0, "Record one deterministic evaluation episode every this many env steps, as a "
        "TensorBoard video and an mp4 in <run dir>/videos, with each frame's VLM reward (and "
        "ground-truth reward and success where the env has them) under it; 0 disables.")
    monitor: bool = opt(
        True, "Reward-hacking monitor (VLM reward runs with a ground-truth reward): logs "
        "monitor/vlm_gt_spearman every 100 env steps and monitor/hacking_suspected when, over "
        "time, the VLM return rises while the ground-truth return falls (Mann-Kendall trend "
        "tests, false-alarm rate 1e-3 each); every logging.video_every env steps it saves the "
        "batch's highest-VLM-reward frames to <run dir>/monitor/step-<N>.png.")
    monitor_window: int = opt(
        20, "Points of the return series whose trends the monitor compares (>= 7); a point "
        "is the mean return of as many finished episodes as the rank has envs, so the window "
        "spans about this many episode lengths of env time.")
    monitor_gt_measures_task: bool | None = opt(
        None, "Whether the env's own reward (the ground truth) measures the task the prompts "
        "describe; the monitor gives its hacking verdict only then. null: the scene says "
        "(vlmrm/Humanoid-v0: no, its reward is locomotion, not a pose; vlmrm/CartPole-v0 and "
        "vlmrm/MountainCarContinuous-v0: yes); any other env id: yes, its reward is its task. "
        "Set false when you prompt an env for something its reward does not pay for.")
    monitor_frames: int = opt(
        8, "Highest-VLM-reward frames per monitor picture strip.")
    stop_timeout_s: float = opt(
        60.0, "Seconds from SIGTERM (or a first Ctrl-C) to a resumable last.ckpt on disk: "
        "collection and scoring in flight stop at the next env step or encoder pass and are "
        "saved as a partial batch. A run whose one encoder pass (reward.stream_frames, "
        "reward.batch_size) or update phase may take longer says so at start. Give a cluster "
        "job at least this much grace between SIGTERM and the kill.")


@dataclass
class Config:
    seed: int = opt(0, "Global seed in [0, 2**32 - 1] (env seeds derive from it).")
    env: EnvConfig = group(EnvConfig, "The environment and how it is rendered.")
    reward: RewardConfig = group(RewardConfig, "The reward model and prompts.")
    agent: AgentConfig = group(AgentConfig, "SAC hyper-parameters and evaluation.")
    trainer: TrainerConfig = group(TrainerConfig, "Forwarded to lightning.Trainer.")
    logging: LoggingConfig = group(LoggingConfig, "Run directory, checkpoints and videos.")
