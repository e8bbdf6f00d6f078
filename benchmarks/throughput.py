"""Throughput of a config: each stage of the training loop alone, then the loop itself.

Stages: env (step + render, one env and ``env.num_envs`` batched as training builds them),
score (the reward model on ``reward.batch_size`` rendered frames, each frame's window for a
video model; with the GFLOP it runs per env step, counted by ``FlopCounterMode``), update (the config's SAC
update, next to Stable-Baselines3's on the same sizes), loop (``vlmrm.commands.fit.fit`` end to end).
Every rate is also given in env steps/s, so that the slowest stage is the bound the loop can
reach; pipeline efficiency is end to end / slowest stage. The update is measured in rounds
before and after the loop and averaged, so that a machine whose speed drifts during the run
does not decide the efficiency. With psutil (in ``vlmrm[bench]``) it also counts the CPU
work of each stage per env step, and so the most env steps/s the machine's cores allow however
well the stages overlap. Ends with a projection of the config's ``agent.total_env_steps``
(``vlmrm.run.plan.plan_run``) in hours.

    python benchmarks/throughput.py --config configs/quickstart.yaml --quick
    python benchmarks/throughput.py --config configs/humanoid_kneeling.yaml env.num_envs=4
    python benchmarks/throughput.py --config configs/cartpole.yaml --json out.json

With ``env.parallel`` it also reports the env worker processes' memory (proportional set
size, summed) after stepping and rendering.

``key=value`` overrides apply to every stage. Stable-Baselines3 (``pip install
vlmrm[bench]``) is needed for the SB3 update ratio only, psutil for the CPU figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below

from throughput_stages import (  # noqa: E402
    Budget,
    Stage,
    bracketed,
    machine_cores,
    measure_env,
    measure_loop,
    measure_score,
    measure_update,
    steps_per_iteration,
)

from vlmrm.backends.registry import GROUND_TRUTH  # noqa: E402
from vlmrm.commands.fit import quiet_third_party  # noqa: E402
from vlmrm.config import Config, load_config  # noqa: E402
from vlmrm.precision import AUTO, FP32, choose_precision  # noqa: E402
from vlmrm.run.build import make_reward_model, reward_device  # noqa: E402
from vlmrm.run.plan import RunPlan, plan_run  # noqa: E402

QUICK = Budget(env_s=1.5, score_s=2.0, update_rounds=2, loop_warmup=3, loop_s=4.0,
               loop_min_iterations=5)
FULL = Budget(env_s=10.0, score_s=10.0, update_rounds=6, loop_warmup=5, loop_s=30.0,
              loop_min_iterations=10)
SB3_HINT = "n/a (pip install vlmrm[bench])"


@dataclass
class Projection:
    """Hours for the config's whole run, from ``plan_run`` and the measured rates."""

    total_env_steps: int
    iterations: int
    updates: int
    frames_to_score: int
    hours_end_to_end: float
    #: Every stage fully overlapped: the stage with the most work for its rate sets the time.
    hours_slowest_stage: float
    stage_hours: dict[str, float]


@dataclass
class CpuWork:
    """What the stages cost the CPU, to tell a pipeline that wastes time from a machine that
    is full. GPU time is not counted."""

    cores: int
    #: Core-seconds of CPU per env step of each stage alone (env and score: machine-wide,
    #: the env workers included; update: the learner process's CPU time).
    core_s_per_env_step: dict[str, float]
    #: cores / the sum of the above: about the most env steps/s the cores allow however the
    #: stages overlap. An estimate: a stage may cost a little less CPU in the loop than alone
    #: (the env stage alone steps through TorchRL's batched env in the main process).
    cpu_limit_env_steps_per_s: float
    #: That limit / the slowest stage alone: about the highest efficiency the cores allow.
    cpu_limit_efficiency: float
    #: Cores busy machine-wide while the loop ran, and its core-seconds per env step.
    loop_cores_busy: float
    loop_core_s_per_env_step: float


@dataclass
class Results:
    config: str | None
    overrides: list[str]
    quick: bool
    env_steps_per_iteration: int
    gradient_steps: int
    env: Stage
    score: Stage | None  # None for reward.backend=ground_truth
    update: Stage
    loop: Stage
    end_to_end_env_steps_per_s: float
    slowest_stage: str
    slowest_stage_env_steps_per_s: float
    pipeline_efficiency: float
    #: The stages alone run one after another: 1 / sum of 1 / (env steps/s).
    serial_env_steps_per_s: float
    #: End to end / serial: what overlapping the stages bought.
    overlap_gain: float
    replay_bytes_per_transition: float
    replay_transitions: int
    sb3_update_ratio: float | None
    projection: Projection
    cpu: CpuWork | None  # None without psutil
    #: reward.precision as configured, the value the stages ran with and why (what
    #: ``auto`` chose on this machine); None for reward.backend=ground_truth.
    reward_precision: dict[str, str] | None = None

    def stages(self) -> dict[str, Stage]:
        """The stages measured alone (score left out when it was skipped)."""
        named = {"env": self.env, "score": self.score, "update": self.update}
        return {k: v for k, v in named.items() if v is not None}


def project(plan: RunPlan, stages: dict[str, Stage], end_to_end: float) -> Projection:
    work = {"env": plan.env_steps, "score": plan.frames_to_score, "update": plan.updates}
    hours = {name: work[name] / stage.rate / 3600 for name, stage in stages.items()}
    return Projection(plan.env_steps, plan.iterations, plan.updates, plan.frames_to_score,
                      plan.env_steps / end_to_end / 3600, max(hours.values()), hours)


def run(config: str | None, overrides: list[str], quick: bool) -> Results:
    """Measure every stage of ``config`` with ``overrides``, then the loop."""
    cfg, precision = settle_precision(load_config(config, overrides))
    budget = QUICK if quick else FULL
    if cfg.agent.num_threads:
        torch.set_num_threads(cfg.agent.num_threads)  # as training does
    reward_model = make_reward_model(cfg)
    env, frames = measure_env(cfg, reward_model, budget.env_s)
    score = None
    if reward_model is not None and frames is not None:
        score = measure_score(cfg, reward_model, frames, budget.score_s)
    del reward_model, frames  # the loop loads its own
    half = max(1, budget.update_rounds // 2)  # rounds before the loop, as many after it
    before = measure_update(cfg, half)
    loop, bytes_per, stored = measure_loop(config, overrides, cfg, budget)
    update = bracketed(before, measure_update(cfg, half))
    results = summarise(cfg, config, overrides, quick, env, score, update, loop, bytes_per,
                        stored)
    results.reward_precision = precision
    return results


def settle_precision(cfg: Config) -> tuple[Config, dict[str, str] | None]:
    """``cfg`` with the reward precision the run would use, and how it was chosen."""
    if cfg.reward.backend == GROUND_TRUTH:
        return cfg, None
    configured, reason = cfg.reward.precision, "set in the config"
    if configured == AUTO:
        choice = choose_precision(reward_device(cfg))
        cfg = replace(cfg, reward=replace(cfg.reward, precision=choice.value))
        reason = choice.reason
    return cfg, {"configured": configured, "value": cfg.reward.precision, "reason": reason}


def summarise(cfg: Config, config: str | None, overrides: list[str], quick: bool, env: Stage,
              score: Stage | None, update: Stage, loop: Stage, bytes_per: float, stored: int
              ) -> Results:
    alone = {k: v for k, v in {"env": env, "score": score, "update": update}.items()
             if v is not None}
    slowest = min(alone, key=lambda k: alone[k].env_steps_per_s)
    bound = alone[slowest].env_steps_per_s
    serial = 1 / sum(1 / stage.env_steps_per_s for stage in alone.values())
    return Results(
        config, list(overrides), quick, steps_per_iteration(cfg), cfg.agent.gradient_steps,
        env, score, update, loop, loop.env_steps_per_s, slowest, bound,
        loop.env_steps_per_s / bound, serial, loop.env_steps_per_s / serial, bytes_per,
        stored, update.detail["sb3_ratio"],
        project(plan_run(cfg), alone, loop.env_steps_per_s),
        cpu_work(cfg, alone, loop, bound))


def cpu_work(cfg: Config, alone: dict[str, Stage], loop: Stage, slowest: float
             ) -> CpuWork | None:
    """Per env step CPU cost of each stage alone and the bound it puts on the loop."""
    if loop.detail["cores_busy"] is None:
        return None
    per_step = {name: stage.detail["cores_busy"] / stage.env_steps_per_s
                for name, stage in alone.items() if name != "update"}
    per_step["update"] = (alone["update"].detail["core_s_per_update"]
                          * cfg.agent.gradient_steps / steps_per_iteration(cfg))
    cores, busy = machine_cores(), loop.detail["cores_busy"]
    limit = cores / sum(per_step.values())
    return CpuWork(cores, per_step, limit, limit / slowest, busy, busy / loop.env_steps_per_s)


# -- output -------------------------------------------------------------------------------
def table(r: Results) -> str:
    """The human-readable report."""
    u, e = r.update.detail, r.env.detail
    notes = {
        "env": f"{e['num_envs']} env(s){' in processes' if e['parallel'] else ''}; one env "
               f"{e['single_env_steps_per_s']:.1f}/s; "
               + (f"renders {'x'.join(map(str, e['frame_shape'][:2]))}" if e["renders"]
                  else "no render (ground truth)"),
        "score": "" if r.score is None else score_note(r.score.detail),
        "update": f"{u['variant']} on {u['device']}, batch {u['batch_size']}, hidden {u['hidden_sizes']}; "
                  f"x {r.env_steps_per_iteration}/{r.gradient_steps} = env steps/s; "
                  "mean of {:.1f} before and {:.1f} after the loop".format(
                      *u["rates_before_after_loop"]),
    }
    lines = [f"vlmrm throughput: {r.config}{' (quick)' if r.quick else ''}, "
             f"{r.env_steps_per_iteration} env steps + {r.gradient_steps} updates per "
             "iteration",
             f"  {'stage':8s} {'alone':>10s} {'unit':11s} {'env steps/s':>11s} "
             f"{'in loop':>8s}  notes"]
    in_loop = r.loop.detail["in_loop_median"]
    in_loop_rate = {"env": in_loop.get("env_steps_per_s"),
                    "score": in_loop.get("vlm_frames_per_s")}
    for name in ("env", "score", "update"):
        s = getattr(r, name)
        if s is None:
            lines.append(f"  {name:8s} {'skipped':>10s} {'':11s} {'-':>11s} {'-':>8s}  "
                         "ground-truth reward: nothing to score")
            continue
        looped = in_loop_rate.get(name)
        lines.append(f"  {name:8s} {s.rate:10.1f} {s.unit:11s} {s.env_steps_per_s:11.1f} "
                     f"{'-' if looped is None else f'{looped:.1f}':>8s}  {notes[name]}")
    lines.append(f"  {'loop':8s} {'':10s} {'end to end':11s} "
                 f"{r.end_to_end_env_steps_per_s:11.1f} {'':8s}  "
                 f"{r.loop.detail['timed_iterations']} iterations after "
                 f"{r.loop.detail['warmup_iterations']} warm-up")
    sb3 = SB3_HINT if r.sb3_update_ratio is None else (
        f"{r.sb3_update_ratio:.2f}x ({u['sb3_updates_per_s']:.1f} updates/s for SB3)")
    p = r.projection
    lines += [
        f"pipeline efficiency {r.pipeline_efficiency:.2f} = end to end / {r.slowest_stage} "
        f"alone (the slowest stage, {r.slowest_stage_env_steps_per_s:.1f} env steps/s)",
        f"stages in turn: {r.serial_env_steps_per_s:.1f} env steps/s; the loop runs "
        f"{r.overlap_gain:.2f}x that",
        cpu_line(r.cpu),
        precision_line(r.reward_precision),
        workers_line(r.env.detail),
        f"replay: {r.replay_bytes_per_transition:.0f} bytes per stored transition "
        f"({r.replay_transitions} stored)",
        f"update rate vs Stable-Baselines3 SAC: {sb3}",
        f"projection for {p.total_env_steps:,} env steps ({p.iterations:,} iterations, "
        f"{p.updates:,} updates, {p.frames_to_score:,} frames to score):",
        f"  {duration(p.hours_end_to_end)} at the end-to-end rate, "
        f"{duration(p.hours_slowest_stage)} if the stages overlapped perfectly (alone: "
        + ", ".join(f"{k} {duration(h)}" for k, h in p.stage_hours.items()) + ")"]
    return "\n".join(lines)


def score_note(d: dict) -> str:
    how = (f"streamed passes of {d['pass_frames']}" if d["streamed"]
           else f"passes of {d['pass_frames']}")
    window = (f", windows of {d['frames_per_reward']} frames"
              if d.get("frames_per_reward", 1) > 1 else "")
    return (f"{how} as in training (reward.batch_size {d['batch_size']}), precision "
            f"{d['precision']}, {d['threads']} thread(s), on {d['device']}; "
            f"{d.get('kind', 'embedding')} model{window}, "
            f"{d.get('gflop_per_env_step', 0):.3g} GFLOP per env step")


def precision_line(p: dict[str, str] | None) -> str:
    if p is None:
        return "reward precision: n/a (ground-truth reward)"
    value = "32 (fp32)" if p["value"] == FP32 else p["value"]
    return f"reward precision: {value}, reward.precision={p['configured']}: {p['reason']}"


def cpu_line(c: CpuWork | None) -> str:
    if c is None:
        return "CPU work: n/a (pip install vlmrm[bench] for psutil)"
    stages = " + ".join(f"{k} {v:.4f}" for k, v in c.core_s_per_env_step.items())
    return (f"CPU: the stages alone cost {stages} core-s per env step, so {c.cores} cores "
            f"allow about {c.cpu_limit_env_steps_per_s:.1f} env steps/s (efficiency about "
            f"{c.cpu_limit_efficiency:.2f}) however they overlap; the loop kept "
            f"{c.loop_cores_busy:.2f} cores busy, {c.loop_core_s_per_env_step:.4f} core-s "
            "per env step")


def workers_line(env: dict) -> str:
    """The env workers' memory (``env.parallel``), summed proportional set size."""
    w = env["workers"]
    if w is not None:
        loaded = ", ".join(w["heavy_modules"]) or "none"
        return (f"env workers: {w['workers']} processes hold {w['pss_mb_total']:,.0f} MB "
                f"(PSS, summed; largest {w['pss_mb_max']:,.0f} MB); torch-side modules "
                f"loaded: {loaded}")
    if env["parallel"] and env["num_envs"] > 1:
        return "env workers: memory n/a (pip install vlmrm[bench] for psutil)"
    return "env workers: none (the envs step in the training process)"


def duration(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.1f} min"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="YAML config, as for vlmrm fit")
    p.add_argument("--quick", action="store_true", help="a few seconds per stage")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="JSON to stdout instead of the table; with PATH, written there too")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_args(argv)
    if args.json is not None and "=" in args.json:  # `--json key=value`: an override
        args.overrides.insert(0, args.json)
        args.json = "-"
    return args


def main(argv: list[str] | None = None) -> Results:
    args = parse_args(argv)
    quiet_third_party()
    warnings.filterwarnings("ignore", module="torchrl")
    # What the libraries print (Lightning's model summary, ...) goes to stderr: stdout holds
    # the table or the JSON only.
    with contextlib.redirect_stdout(sys.stderr):
        results = run(args.config, args.overrides, args.quick)
    if args.json == "-":
        print(json.dumps(asdict(results), indent=1))
        return results
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(results), indent=1))
    print(table(results))
    return results


if __name__ == "__main__":
    main()
