"""benchmarks/throughput.py on the quick start, --quick: every stage measured, rates in env
steps/s, efficiency against the slowest stage, replay bytes, the projection from plan_run;
and with the ground-truth reward, no scoring stage."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
import torch

from tests.helpers import CONFIGS, ROOT
from vlmrm.config import load_config
from vlmrm.envs.factory import make_base_env
from vlmrm.precision import choose_precision
from vlmrm.run.plan import plan_run

QUICKSTART = str(CONFIGS / "quickstart.yaml")
STAGES = ("env", "score", "update")


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("throughput",
                                                  ROOT / "benchmarks" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["throughput"] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("throughput", None)


@pytest.fixture(scope="module")
def quickstart(bench, tmp_path_factory) -> dict:
    """The JSON, plus the table printed beside it under "table"."""
    path = tmp_path_factory.mktemp("throughput") / "quickstart.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        bench.main(["--config", QUICKSTART, "--quick", "--json", str(path),
                    "trainer.accelerator=cpu"])
    return {**json.loads(path.read_text()), "table": printed.getvalue()}


def cartpole_bytes_per_transition() -> int:
    """Observation and next observation, the one-hot action, reward, done, terminated, and
    the int64 index TorchRL's TensorDictReplayBuffer stores with every row."""
    env = make_base_env(load_config(QUICKSTART).env, None, from_pixels=False)
    obs = env.observation_spec["observation"]
    action = env.action_spec
    env.close()
    assert obs.shape == (4,) and action.shape == (2,)  # CartPole: 4 numbers, 2 actions
    obs_bytes = obs.shape.numel() * obs.dtype.itemsize
    action_bytes = action.shape.numel() * action.dtype.itemsize
    return 2 * obs_bytes + action_bytes + 4 + 1 + 1 + 8


def test_every_stage_has_a_positive_rate_in_env_steps(quickstart):
    r = quickstart
    per_iteration, gradient_steps = r["env_steps_per_iteration"], r["gradient_steps"]
    assert (per_iteration, gradient_steps) == (8, 8)  # train_freq 8, one env
    for name in (*STAGES, "loop"):
        assert r[name]["rate"] > 0 and r[name]["env_steps_per_s"] > 0, name
    assert r["env"]["unit"] == "env steps/s" and r["env"]["detail"]["renders"] is True
    assert r["score"]["unit"] == "frames/s" and r["score"]["detail"]["batch_size"] == 256
    # training scores each iteration's 8 frames at once (a stream pass would be 16 steps)
    assert r["score"]["detail"]["pass_frames"] == 8 and not r["score"]["detail"]["streamed"]
    assert r["score"]["detail"]["threads"] == 1  # agent.num_threads, as training scores
    assert r["score"]["env_steps_per_s"] == r["score"]["rate"]
    assert r["update"]["unit"] == "updates/s" and r["update"]["detail"]["variant"] == "fast"
    assert r["update"]["env_steps_per_s"] == pytest.approx(
        r["update"]["rate"] * per_iteration / gradient_steps)
    before, after = r["update"]["detail"]["rates_before_after_loop"]  # drift bracketed
    assert before > 0 and after > 0 and r["update"]["rate"] == pytest.approx((before + after) / 2)
    assert r["loop"]["detail"]["timed_iterations"] >= 5
    assert set(r["loop"]["detail"]["in_loop_median"]) >= {"env_steps_per_s",
                                                          "vlm_frames_per_s"}


def test_gflop_per_env_step_is_the_image_encoder_on_one_frame(quickstart, bench):
    """An embedding model runs its image encoder once per env step: the benchmark's count
    (the reward model's whole scoring) is open_clip's encode_image on one preprocessed frame
    plus the formula's few FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    from vlmrm.run.build import make_reward_model

    detail = quickstart["score"]["detail"]
    assert detail["kind"] == "embedding" and detail["frames_per_reward"] == 1
    cfg = load_config(QUICKSTART, ["trainer.accelerator=cpu",
                                   f"reward.precision={detail['precision']}"])
    backend = make_reward_model(cfg).backend
    frames = torch.randint(0, 256, (2, *detail["frame_shape"]), dtype=torch.uint8)
    counter = FlopCounterMode(display=False)
    with counter:  # with grad: nn.MultiheadAttention's plain path, whose matmuls count
        backend.model.encode_image(backend.preprocessor(frames, backend.dtype))
    assert detail["gflop_per_env_step"] == pytest.approx(
        counter.get_total_flops() / 2 / 1e9, rel=0.01)


def test_reward_precision_is_what_auto_chooses_here(quickstart):
    """The quick start leaves reward.precision at its default, auto: the report names the
    value this machine's CPU gets, the reason, and the score stage ran with it."""
    chosen = choose_precision("cpu")
    assert quickstart["reward_precision"] == {"configured": "auto", "value": chosen.value,
                                              "reason": chosen.reason}
    assert quickstart["score"]["detail"]["precision"] == chosen.value
    label = "32 (fp32)" if chosen.value == "32" else chosen.value
    assert (f"reward precision: {label}, reward.precision=auto: {chosen.reason}"
            in quickstart["table"].splitlines())


def test_a_configured_precision_is_reported_as_set(bench):
    cfg, report = bench.settle_precision(load_config(QUICKSTART, ["reward.precision=bf16"]))
    assert cfg.reward.precision == "bf16"
    assert report == {"configured": "bf16", "value": "bf16", "reason": "set in the config"}


def test_efficiency_is_end_to_end_over_the_slowest_stage(quickstart):
    r = quickstart
    alone = {name: r[name]["env_steps_per_s"] for name in STAGES}
    assert r["slowest_stage"] == min(alone, key=alone.get)
    assert r["slowest_stage_env_steps_per_s"] == min(alone.values())
    assert r["end_to_end_env_steps_per_s"] == r["loop"]["env_steps_per_s"]
    assert r["pipeline_efficiency"] == pytest.approx(
        r["end_to_end_env_steps_per_s"] / min(alone.values()))
    serial = 1 / sum(1 / v for v in alone.values())  # the stages' times added up
    assert r["serial_env_steps_per_s"] == pytest.approx(serial)
    assert r["overlap_gain"] == pytest.approx(r["end_to_end_env_steps_per_s"] / serial)


def test_replay_bytes_follow_from_cartpole_dims(quickstart):
    assert quickstart["replay_bytes_per_transition"] == cartpole_bytes_per_transition()
    stored = quickstart["replay_transitions"]
    timed = quickstart["loop"]["detail"]["timed_iterations"]
    assert stored % 8 == 0 and stored >= 8 * timed


def test_projection_follows_plan_run(quickstart):
    plan, p = plan_run(load_config(QUICKSTART)), quickstart["projection"]
    assert (p["total_env_steps"], p["iterations"], p["updates"], p["frames_to_score"]) == (
        plan.env_steps, plan.iterations, plan.updates, plan.frames_to_score)
    assert p["hours_end_to_end"] == pytest.approx(
        plan.env_steps / quickstart["end_to_end_env_steps_per_s"] / 3600)
    assert p["stage_hours"]["update"] == pytest.approx(
        plan.updates / quickstart["update"]["rate"] / 3600)
    assert p["hours_slowest_stage"] == max(p["stage_hours"].values())


def test_sb3_update_ratio(quickstart):
    ratio = quickstart["sb3_update_ratio"]
    if importlib.util.find_spec("stable_baselines3") is None:
        assert ratio is None
    else:
        assert ratio > 0 and quickstart["update"]["detail"]["sb3_updates_per_s"] > 0


def test_cpu_work_adds_up_to_the_bound(quickstart):
    """psutil comes with the dev extra, so the CPU figures are there."""
    c, r = quickstart["cpu"], quickstart
    assert c is not None and c["cores"] == os.cpu_count()
    per_step = c["core_s_per_env_step"]
    assert set(per_step) == set(STAGES) and all(v > 0 for v in per_step.values())
    for name in ("env", "score"):  # machine-wide cores busy over the stage's env steps/s
        busy = r[name]["detail"]["cores_busy"]
        assert 0 < busy <= c["cores"] + 0.1
        assert per_step[name] == pytest.approx(busy / r[name]["env_steps_per_s"])
    assert per_step["update"] == pytest.approx(  # CPU per update, 8 updates per 8 steps
        r["update"]["detail"]["core_s_per_update"])
    limit = c["cpu_limit_env_steps_per_s"]
    assert limit == pytest.approx(c["cores"] / sum(per_step.values()))
    assert c["cpu_limit_efficiency"] == pytest.approx(
        limit / r["slowest_stage_env_steps_per_s"])
    assert c["loop_cores_busy"] == r["loop"]["detail"]["cores_busy"]
    assert 0 < c["loop_cores_busy"] <= c["cores"] + 0.1
    assert c["loop_core_s_per_env_step"] == pytest.approx(
        c["loop_cores_busy"] / r["end_to_end_env_steps_per_s"])


@pytest.mark.slow  # end to end, minutes of the fast suite's budget; CI runs it
def test_ground_truth_has_no_score_stage(bench, capsys, monkeypatch):
    import throughput_stages  # on sys.path once the benchmark module is loaded

    # SB3 as if not installed. Not by hiding the module: TorchRL's gym wrapper imports from
    # it when it was installed at TorchRL's import, and this test may run first.
    monkeypatch.setattr(throughput_stages, "sb3_installed", lambda: False)
    monkeypatch.setitem(sys.modules, "psutil", None)  # as if not installed
    results = bench.main(["--config", QUICKSTART, "--quick", "--json",
                          "reward.backend=ground_truth", "agent.gradient_steps=4",
                          "trainer.accelerator=cpu"])
    r = json.loads(capsys.readouterr().out)  # --json without a path: JSON on stdout only
    assert r["score"] is None and r["env"]["detail"]["renders"] is False
    assert r["gradient_steps"] == 4  # overrides reach every stage
    assert r["update"]["env_steps_per_s"] == pytest.approx(r["update"]["rate"] * 8 / 4)
    alone = {name: r[name]["env_steps_per_s"] for name in ("env", "update")}
    assert r["slowest_stage"] == min(alone, key=alone.get)
    assert r["pipeline_efficiency"] == pytest.approx(
        r["end_to_end_env_steps_per_s"] / min(alone.values()))
    serial = 1 / sum(1 / v for v in alone.values())  # the stages' times added up
    assert r["serial_env_steps_per_s"] == pytest.approx(serial)
    assert r["overlap_gain"] == pytest.approx(r["end_to_end_env_steps_per_s"] / serial)
    assert r["projection"]["frames_to_score"] == 0 and "score" not in r["projection"][
        "stage_hours"]
    assert r["sb3_update_ratio"] is None
    assert r["cpu"] is None and r["loop"]["detail"]["cores_busy"] is None
    table = bench.table(results)
    assert "n/a (pip install vlmrm[bench])" in table and "skipped" in table
    assert "CPU work: n/a (pip install vlmrm[bench] for psutil)" in table
    assert r["reward_precision"] is None
    assert "reward precision: n/a (ground-truth reward)" in table.splitlines()


@pytest.mark.parametrize("overrides, expected", [
    # 2 envs x 16 steps per iteration; passes of 8 frames = 4 steps of both envs
    (["reward.stream_frames=8"], (8, True)),
    (["reward.stream_frames=0"], (32, False)),  # the whole iteration at once
    (["reward.stream_frames=0", "reward.batch_size=20"], (20, False)),  # in batch_size chunks
    (["agent.overlap=false"], (32, False)),  # the sequential loop never streams
])
def test_the_score_stage_feeds_the_encoder_as_training_does(bench, overrides, expected):
    import throughput_stages  # on sys.path once the benchmark module is loaded

    from vlmrm.run.build import make_reward_model

    cfg = load_config(QUICKSTART, ["env.num_envs=2", "agent.train_freq=16", *overrides])
    assert throughput_stages.encoder_pass(cfg, make_reward_model(cfg)) == expected


def test_serial_envs_have_no_worker_memory_line(bench, quickstart):
    assert quickstart["env"]["detail"]["workers"] is None  # one env, in the main process
    line = bench.workers_line(quickstart["env"]["detail"])
    assert line == "env workers: none (the envs step in the training process)"


def test_env_workers_memory_is_their_summed_pss(bench):
    """With env.parallel the env stage reports what the worker processes hold, measured as
    the benchmark measures it, and the table says it."""
    import psutil
    import throughput_stages

    from vlmrm.config.schema import EnvConfig
    from vlmrm.envs.factory import make_env, vector_envs

    env = make_env(EnvConfig(id="vlmrm/CartPole-v0", num_envs=2, parallel=True), None,
                   from_pixels=True, seed=0)
    try:
        td = env.reset()
        for _ in range(3):
            _, td = env.step_and_maybe_reset(env.rand_action(td))
        memory = throughput_stages.worker_memory(env)
        pids = [fact["pid"] for fact in vector_envs(env).process_facts()]
        pss = [psutil.Process(pid).memory_full_info().pss for pid in pids]
    finally:
        env.close()
    assert memory["workers"] == 2 and memory["heavy_modules"] == []
    assert psutil.Process().pid not in pids
    # memory moves a little between two reads; the sum is of these two processes
    assert memory["pss_mb_total"] == pytest.approx(sum(pss) / 1e6, rel=0.05)
    assert memory["pss_mb_max"] <= memory["pss_mb_total"] < 2 * memory["pss_mb_max"] + 1
    detail = {"workers": memory, "parallel": True, "num_envs": 2}
    line = bench.workers_line(detail)
    assert line.startswith("env workers: 2 processes hold ") and line.endswith(": none")
    assert bench.workers_line({**detail, "workers": None}) == (
        "env workers: memory n/a (pip install vlmrm[bench] for psutil)")


@pytest.fixture(scope="module")
def tiny_kinds(tmp_path_factory) -> dict:
    """Configs of the quick start with a tiny local X-CLIP and a tiny local judge."""
    from tests.backends.fixtures import build_judge, build_xclip

    root = tmp_path_factory.mktemp("kinds")
    build_xclip(root / "xclip")
    build_judge(root / "judge")
    common = ["trainer.accelerator=cpu", "reward.precision=32", "reward.batch_size=8"]
    return {"video": load_config(QUICKSTART, [*common, "reward.backend=xclip",
                                              f"reward.model={root / 'xclip'}"]),
            "judge": load_config(QUICKSTART, [*common, "reward.backend=hf_judge",
                                              f"reward.model={root / 'judge'}",
                                              "reward.transform=null"])}


def test_the_score_stage_of_a_video_model_scores_windows_and_counts_one_per_step(
        bench, tiny_kinds):
    """Stride 1: one video-encoder pass over a window per env step."""
    import throughput_stages
    from torch.utils.flop_counter import FlopCounterMode

    from vlmrm.run.build import make_reward_model

    model = make_reward_model(tiny_kinds["video"])
    k = model.frames_needed
    frames = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8)
    stage = throughput_stages.measure_score(tiny_kinds["video"], model, frames, 0.05)
    detail = stage.detail
    assert stage.rate > 0 and detail["kind"] == "video" and detail["frames_per_reward"] == k > 1
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.backend.encode_videos(frames[:k][None])
    assert detail["gflop_per_env_step"] == pytest.approx(counter.get_total_flops() / 1e9,
                                                         rel=0.01)
    assert "video model, windows of" in bench.score_note(detail)


def test_a_judge_runs_one_forward_per_frame_and_goal_prompt(bench, tiny_kinds):
    import throughput_stages

    from vlmrm.run.build import make_reward_model

    frames = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    cfg = tiny_kinds["judge"]
    goal = cfg.reward.goal_prompts[0]
    twice = load_config(None, [f"reward.goal_prompts=[{goal!r}, {goal!r}]"], base=cfg)
    once, double = (throughput_stages.gflop_per_env_step(make_reward_model(c), frames)
                    for c in (cfg, twice))
    assert once > 0 and double == pytest.approx(2 * once, rel=1e-6)
    stage = throughput_stages.measure_score(cfg, make_reward_model(cfg), frames, 0.05)
    assert stage.rate > 0 and stage.detail["kind"] == "judge"
    assert stage.detail["gflop_per_env_step"] == pytest.approx(once)


@pytest.mark.slow  # end to end like the quick start's, a minute of the fast suite's budget
@pytest.mark.parametrize("kind", ["video", "judge"])
def test_the_benchmark_runs_with_every_kind(bench, tiny_kinds, kind, tmp_path):
    cfg = tiny_kinds[kind]
    path = tmp_path / f"{kind}.json"
    with contextlib.redirect_stdout(io.StringIO()):
        bench.main(["--config", QUICKSTART, "--quick", "--json", str(path),
                    "trainer.accelerator=cpu", f"reward.backend={cfg.reward.backend}",
                    f"reward.model={cfg.reward.model}", "reward.transform=null",
                    "agent.total_env_steps=2000"])
    r = json.loads(path.read_text())
    assert r["score"]["detail"]["kind"] == kind and r["score"]["detail"]["gflop_per_env_step"] > 0
    assert r["loop"]["env_steps_per_s"] > 0
