"""The stages of ``benchmarks/throughput.py``, each measured alone, and the whole loop.

One function per stage; each returns a :class:`Stage` whose ``env_steps_per_s`` makes the
stages comparable (how many env steps per second the loop could take if that stage were all
it did).
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from sac_update import update_rates
from tensordict import TensorDictBase
from torchrl.data import TensorDictReplayBuffer
from torchrl.envs import EnvBase

from vlmrm.commands.fit import fit
from vlmrm.config import Config, load_config
from vlmrm.envs.factory import SeedPurpose, env_for, make_base_env, vector_envs
from vlmrm.keys import NEXT, PIXELS
from vlmrm.reward.model import VLMRewardModel, input_size
from vlmrm.reward.seam import RewardModel, episode_windows
from vlmrm.run.build import make_stream
from vlmrm.run.plan import plan_run
from vlmrm.sac.agent import is_discrete


@dataclass
class Stage:
    """One measured rate, in its own unit and converted to env steps/s."""

    rate: float
    unit: str
    env_steps_per_s: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Budget:
    """How long each stage runs."""

    env_s: float
    score_s: float
    update_rounds: int  # half before the loop, half after it
    loop_warmup: int  # iterations before the loop's clock starts
    loop_s: float
    loop_min_iterations: int


def steps_per_iteration(cfg: Config) -> int:
    """Env steps of one training iteration (all envs)."""
    return plan_run(cfg).per_iteration


def timed(call: Callable[[], None], seconds: float, min_calls: int = 3) -> float:
    """Calls per second of ``call``, repeated for at least ``seconds`` and ``min_calls``."""
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        call()
        calls += 1
    return calls / (time.perf_counter() - start)


def busy_core_seconds() -> float | None:
    """CPU-seconds the whole machine's cores have spent busy so far, over every process (the
    env workers too); ``None`` without psutil (``pip install vlmrm[bench]``). Idle, I/O wait
    and time the hypervisor stole do not count: they are not work of the stages."""
    try:
        import psutil
    except ImportError:
        return None
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


class CoresBusy:
    """Cores busy, machine-wide, while the ``with`` block ran (``cores`` stays ``None``
    without psutil)."""

    def __enter__(self) -> CoresBusy:
        self.cores: float | None = None
        self.busy, self.start = busy_core_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, wall = busy_core_seconds(), time.perf_counter() - self.start
        if busy is not None and self.busy is not None:
            self.cores = (busy - self.busy) / wall


def machine_cores() -> int:
    return os.cpu_count() or 1


def worker_memory(env: EnvBase) -> dict[str, Any] | None:
    """What ``env.parallel``'s worker processes hold now: their proportional set size
    (each shared page divided among the processes that map it, so the sum is what the
    workers add to the machine) in all and the largest, in MB (10^6 bytes), and the heavy
    modules (torch, ...) any of them loaded. None for envs stepped in this process, or
    without psutil."""
    vector = vector_envs(env)
    if vector is None:
        return None
    try:
        import psutil
    except ImportError:
        return None
    facts = vector.process_facts()
    pss = [psutil.Process(fact["pid"]).memory_full_info().pss for fact in facts]
    return {"workers": len(pss), "pss_mb_total": sum(pss) / 1e6, "pss_mb_max": max(pss) / 1e6,
            "heavy_modules": sorted({m for fact in facts for m in fact["heavy_modules"]})}


# -- env ----------------------------------------------------------------------------------
class RandomStepper:
    """Steps an env with random actions via ``step_and_maybe_reset``, as a collector does,
    keeping up to ``keep`` rendered frames for the scoring stage."""

    def __init__(self, env: EnvBase, keep: int) -> None:
        self.env, self.keep, self.frames = env, keep, []
        self.td = env.reset()
        self.kept = 0

    def __call__(self) -> None:
        td, self.td = self.env.step_and_maybe_reset(self.env.rand_action(self.td))
        pixels = td.get((NEXT, PIXELS), None)
        if pixels is not None and self.kept < self.keep:
            flat = pixels.reshape(-1, *pixels.shape[-3:])[: self.keep - self.kept].clone()
            self.frames.append(flat)
            self.kept += len(flat)


def measure_env(cfg: Config, reward_model: VLMRewardModel | None, seconds: float
                ) -> tuple[Stage, torch.Tensor | None]:
    """Env steps/s of one env and of ``env.num_envs`` batched as training builds them, with
    rendering when training renders (a VLM reward); also the frames rendered on the way."""
    size, pixels = input_size(reward_model), reward_model is not None
    single = env_for(cfg, SeedPurpose.TRAIN, render_size=size, from_pixels=pixels)
    stepper = RandomStepper(single, keep=cfg.reward.batch_size)
    stepper()  # the first render sets up the renderer
    with CoresBusy() as cpu:
        single_rate = timed(stepper, seconds)
    single.close()
    batched_rate, workers = single_rate, None
    if cfg.env.num_envs > 1:
        env = env_for(cfg, SeedPurpose.TRAIN, render_size=size, from_pixels=pixels,
                      num_envs=cfg.env.num_envs)
        step = RandomStepper(env, keep=0)
        step()  # worker start-up and first renders
        with CoresBusy() as cpu:
            batched_rate = timed(step, seconds) * cfg.env.num_envs
        workers = worker_memory(env)  # after stepping and rendering: the renderers' memory
        env.close()
    frames = torch.cat(stepper.frames) if stepper.frames else None
    detail = {"single_env_steps_per_s": single_rate, "num_envs": cfg.env.num_envs,
              "parallel": cfg.env.parallel, "renders": pixels, "cores_busy": cpu.cores,
              "frame_shape": None if frames is None else list(frames.shape[1:]),
              "workers": workers}
    return Stage(batched_rate, "env steps/s", batched_rate, detail), frames


# -- score --------------------------------------------------------------------------------
def encoder_pass(cfg: Config, reward_model: VLMRewardModel) -> tuple[int, bool]:
    """Frames per encoder call as training feeds the reward model, and whether that is a
    streamed pass: ``reward.stream_frames`` rounded to whole env steps (``make_stream``), or
    else one iteration's frames, at most ``reward.batch_size`` at a time."""
    stream = make_stream(cfg, reward_model, cfg.env.num_envs)
    if stream is None:
        return min(steps_per_iteration(cfg), cfg.reward.batch_size), False
    stream.close()
    return stream.steps * cfg.env.num_envs, True


def measure_score(cfg: Config, reward_model: RewardModel, frames: torch.Tensor,
                  seconds: float) -> Stage:
    """Frames/s of the reward model on real frames, scored again and again in the passes
    training scores them in (:func:`encoder_pass`; frames are tiled up to a pass if the env
    stage rendered fewer), on the torch thread count training uses: a CPU encoder's rate
    per frame depends on both (RN50 bf16 on this VM, one thread: 18.5 frames/s in passes of
    16, 11.5 in passes of 800). A model of more than one frame scores each frame's window
    (stride 1: one window per env step, so frames/s is env steps/s for every kind)."""
    per_pass, streamed = encoder_pass(cfg, reward_model)
    distinct = len(frames)
    frames = frames.repeat(-(-per_pass // distinct), 1, 1, 1)[:per_pass]
    windows = episode_windows(frames, reward_model.frames_needed)
    with torch.no_grad(), reward_model.frozen():
        reward_model.score(windows)  # warm-up (and compiling, with reward.compile)
        with CoresBusy() as cpu:
            # .cpu() waits for the device, as training's read of the rewards does.
            rate = timed(lambda: reward_model.score(windows).cpu(), seconds) * per_pass
    detail = {"pass_frames": per_pass, "streamed": streamed,
              "batch_size": cfg.reward.batch_size, "threads": torch.get_num_threads(),
              "distinct_frames": min(distinct, per_pass), "cores_busy": cpu.cores,
              "frame_shape": list(frames.shape[1:]), "precision": cfg.reward.precision,
              "device": str(reward_model.device), "compile": cfg.reward.compile,
              "kind": reward_kind(reward_model), "frames_per_reward": reward_model.frames_needed,
              "gflop_per_env_step": gflop_per_env_step(reward_model, frames)}
    return Stage(rate, "frames/s", rate, detail)


def reward_kind(reward_model: RewardModel) -> str:
    """The reward model's backend kind (embedding, video, judge)."""
    backend = getattr(reward_model, "backend", None)
    return getattr(backend, "kind", "embedding")


def gflop_per_env_step(reward_model: RewardModel, frames: torch.Tensor, steps: int = 4
                       ) -> float:
    """GFLOP the reward model runs per env step, counted by ``FlopCounterMode`` on the
    model's own scoring of ``steps`` consecutive steps of one episode (stride 1): an image
    encoder pass per frame, a video encoder pass per window, a judge's forward per frame and
    goal prompt; whatever the model actually runs, prompts embedded once excluded."""
    from torch.utils.flop_counter import FlopCounterMode

    clip = frames.repeat(-(-steps // len(frames)), 1, 1, 1)[:steps]
    windows = episode_windows(clip, reward_model.frames_needed)
    counter = FlopCounterMode(display=False)
    # nn.MultiheadAttention's inference fast path is one fused op the counter does not know
    # (it would miss open_clip's attention projections); the plain path computes the same.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), reward_model.frozen(), counter:
            reward_model.score(windows)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() / steps / 1e9


# -- update -------------------------------------------------------------------------------
def sb3_installed() -> bool:
    return importlib.util.find_spec("stable_baselines3") is not None


def learner_device(cfg: Config) -> str:
    """Where training's learner runs: Lightning's ``auto`` (and ``gpu``/``cuda``) picks a GPU
    when torch sees one."""
    wants_gpu = cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    return "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"


def measure_update(cfg: Config, rounds: int) -> Stage:
    """Updates/s of the config's update (agent.loss_impl, agent.compile) at
    ``agent.batch_size`` and ``agent.hidden_sizes`` on the learner's device, interleaved with
    SB3's SAC on the same device when it is installed (``benchmarks/sac_update.py``)."""
    probe = make_base_env(cfg.env, None, from_pixels=False)
    obs_dim = probe.observation_spec["observation"].shape[-1]
    spec = probe.action_spec
    probe.close()
    discrete = is_discrete(spec)
    bound = 1.0 if discrete else float(spec.space.high.abs().max())
    a = cfg.agent
    compiled = a.compile and a.loss_impl == "fast"
    sb3 = sb3_installed()
    device = learner_device(cfg)
    rates = update_rates(obs_dim, spec.shape[-1], a.hidden_sizes, a.batch_size, discrete,
                         compiled, sb3=sb3, rounds=rounds, bound=bound,
                         threads=a.num_threads, activation=a.activation,
                         critic_loss=a.critic_loss, device=device)
    variant = "fast+compile" if compiled else a.loss_impl
    ups = rates[variant]["updates_per_s"]
    detail = {"variant": variant, "device": device, "batch_size": a.batch_size,
              "hidden_sizes": a.hidden_sizes,
              # this process's CPU time: SB3's rounds run in between, so not machine-wide
              "core_s_per_update": 1 / rates[variant]["updates_per_cpu_s"],
              "obs_dim": obs_dim, "act_dim": spec.shape[-1], "discrete": discrete,
              "sb3_updates_per_s": rates["sb3"]["updates_per_s"] if sb3 else None,
              "sb3_ratio": rates[variant]["ratio_vs_sb3"] if sb3 else None}
    env_steps = ups * steps_per_iteration(cfg) / a.gradient_steps
    return Stage(ups, "updates/s", env_steps, detail)


def bracketed(before: Stage, after: Stage) -> Stage:
    """One update stage from rounds measured before and after the loop: their mean, so that
    a machine drifting steadily faster or slower during the run (shared VMs drift by
    +-15 % over minutes) does not bias the loop's efficiency against it."""
    detail = dict(before.detail, rates_before_after_loop=[before.rate, after.rate])
    detail["core_s_per_update"] = (before.detail["core_s_per_update"]
                                   + after.detail["core_s_per_update"]) / 2
    for key in ("sb3_updates_per_s", "sb3_ratio"):
        if before.detail[key] is not None:
            detail[key] = (before.detail[key] + after.detail[key]) / 2
    return Stage((before.rate + after.rate) / 2, before.unit,
                 (before.env_steps_per_s + after.env_steps_per_s) / 2, detail)


# -- the whole loop -----------------------------------------------------------------------
class LoopTimer(L.Callback):
    """Timestamps each training iteration; stops training once ``warmup`` iterations and
    then ``seconds`` (and ``min_iterations``) have passed. Keeps the replay buffer and the
    module's ``perf/...`` metrics of the timed iterations."""

    def __init__(self, warmup: int, seconds: float, min_iterations: int) -> None:
        self.warmup, self.seconds, self.min_iterations = warmup, seconds, min_iterations
        self.stamps: list[float] = []
        self.busy: list[float | None] = []  # busy_core_seconds() at each stamp
        self.perf: dict[str, list[float]] = {}
        self.replay_buffer: TensorDictReplayBuffer | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.logger is not None:
            log_metrics = trainer.logger.log_metrics

            def tap(metrics: dict[str, float], step: int | None = None) -> None:
                if len(self.stamps) >= self.warmup:
                    for key, value in metrics.items():
                        if key.startswith("perf/"):
                            self.perf.setdefault(key, []).append(value)
                log_metrics(metrics, step)

            trainer.logger.log_metrics = tap

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self.stamps.append(time.perf_counter())
        self.busy.append(busy_core_seconds())
        self.replay_buffer = pl_module.data.replay_buffer
        timed_iterations = len(self.stamps) - self.warmup
        if (timed_iterations >= self.min_iterations
                and self.stamps[-1] - self.stamps[self.warmup - 1] >= self.seconds):
            trainer.should_stop = True

    def rate(self, env_steps_per_iteration: int) -> float:
        """Env steps/s over the iterations after the warm-up."""
        if len(self.stamps) <= self.warmup:
            raise RuntimeError(f"training stopped after {len(self.stamps)} iterations, "
                               f"before the {self.warmup} warm-up iterations were over")
        span = self.stamps[-1] - self.stamps[self.warmup - 1]
        return (len(self.stamps) - self.warmup) * env_steps_per_iteration / span

    def cores_busy(self) -> float | None:
        """Cores busy machine-wide over the iterations after the warm-up."""
        first, last = self.busy[self.warmup - 1], self.busy[-1]
        if first is None or last is None:
            return None
        return (last - first) / (self.stamps[-1] - self.stamps[self.warmup - 1])


def loop_overrides(cfg: Config, budget: Budget, output_dir: str) -> list[str]:
    """Updates from the last warm-up iteration on; enough iterations to stop on time; no
    evaluation, videos or checkpoints before the end."""
    per_iteration = steps_per_iteration(cfg)
    cap = per_iteration * 100_000
    return [f"agent.total_env_steps={cap}",
            f"agent.learning_starts={per_iteration * (budget.loop_warmup - 1)}",
            f"agent.buffer_size={min(cfg.agent.buffer_size, cap)}",
            "agent.eval_every=0", "logging.video_every=0", f"logging.checkpoint_every={cap}",
            f"logging.output_dir={output_dir}", "logging.run_name=throughput",
            "trainer.enable_progress_bar=false"]


def measure_loop(config: str | None, overrides: list[str], cfg: Config, budget: Budget
                 ) -> tuple[Stage, float, int]:
    """End-to-end env steps/s of ``vlmrm.commands.fit.fit``; also the replay bytes per stored
    transition and the number stored."""
    timer = LoopTimer(budget.loop_warmup, budget.loop_s, budget.loop_min_iterations)
    with tempfile.TemporaryDirectory(prefix="vlmrm-throughput-") as tmp:
        loop_cfg = load_config(config, [*overrides, *loop_overrides(cfg, budget, tmp)])
        fit(loop_cfg, config, callbacks=[timer])
    rate = timer.rate(steps_per_iteration(cfg))
    detail = {"warmup_iterations": budget.loop_warmup,
              "timed_iterations": len(timer.stamps) - budget.loop_warmup,
              "cores_busy": timer.cores_busy(),
              "in_loop_median": {k.removeprefix("perf/"): statistics.median(v)
                                 for k, v in timer.perf.items()}}
    stored = len(timer.replay_buffer)
    return Stage(rate, "env steps/s", rate, detail), replay_bytes(timer.replay_buffer), stored


def replay_bytes(buffer: TensorDictReplayBuffer) -> float:
    """Bytes of the replay storage's tensors per stored transition."""
    stored = len(buffer)
    rows: TensorDictBase = buffer.storage[:stored]
    total = sum(t.numel() * t.element_size() for t in rows.values(True, True))
    return total / stored

