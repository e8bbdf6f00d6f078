"""A bounded stop: SIGTERM (or a first Ctrl-C) mid-iteration writes a resumable checkpoint
without waiting for the iteration, and the resumed run equals the run that never stopped; a
second signal exits at once and leaves no process behind.

The runs are `vlmrm fit` on the quick start (CartPole rendered, the bundled demo encoder
scoring frames in passes while the batch is collected), driven by tests/rl/stop_probe.py:
the probe holds rank 0's collection three steps into a batch until the test's signal halts
it, so the signal always lands mid-iteration with steps collected and passes encoded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from tests.helpers import CONFIGS, ROOT
from vlmrm.collect.loop import Collection, Halt, Partial, StepLoop
from vlmrm.config import load_config
from vlmrm.envs.factory import make_env, vector_envs
from vlmrm.interrupt import EXIT_INTERRUPTED, stop_latency_note
from vlmrm.keys import NEXT, PIXELS
from vlmrm.run.build import make_reward_model, make_stream
from vlmrm.run.resume import read_meta, resumable_checkpoint
from vlmrm.run.runstate import STATE, data_dir_name
from vlmrm.sac.agent import make_agent
from vlmrm.sac.exploration import ExplorationSampler, actor_network

PROBE = str(ROOT / "tests" / "rl" / "stop_probe.py")
#: 4 envs x 16 steps per iteration, encoded in passes of 2 steps while they are collected;
#: updates from the second iteration on. The probe holds the 3rd step of batch 3.
RUN = ("trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "env.num_envs=4",
       "agent.train_freq=16", "reward.stream_frames=8", "agent.learning_starts=64",
       "agent.batch_size=64", "agent.total_env_steps=320", "agent.eval_every=0",
       "agent.hidden_sizes=[32,32]", "logging.checkpoint_every=100000")
ARM_AT = "128"
#: A stop must write its checkpoint within this (the config's default).
STOP_TIMEOUT_S = 60.0
#: Variants whose signals go to the whole process group, as a terminal's Ctrl-C does: the
#: env workers (children of the training process here) get them too.
GROUP_SIGNALS = {"parallel"}
VARIANTS = {
    # The collector in a process of its own (the default), envs stepped in it.
    "process": ["agent.collector=process", "agent.gradient_steps=4"],
    # Collection on a thread of the training process, each env in a worker process.
    "parallel": ["agent.collector=thread", "env.parallel=true", "agent.gradient_steps=4"],
    # Two CPU ranks (gloo) with 2 envs each; SIGTERM reaches rank 0, which forwards it.
    "ddp": ["agent.collector=process", "agent.gradient_steps=4", "trainer.strategy=ddp",
            "trainer.devices=2"],
}


def _collection(cfg, model) -> Collection:
    """2 CartPole envs rendered, the demo encoder in passes of 2 steps, batches of 10."""
    env = make_env(cfg.env, model.image_size, from_pixels=True, seed=3)
    actor, _ = make_agent(4, env.action_spec_unbatched, [8])
    sampler = ExplorationSampler(actor_network(actor), env.action_spec_unbatched, cfg.agent,
                                 torch.Generator().manual_seed(0))
    collection = Collection(StepLoop(env, sampler), 10, 1, overlap=True,
                            stream=make_stream(cfg, model, 2))
    collection.after = lambda batch, seconds, streamed: (batch, streamed[0])
    return collection


@pytest.mark.parametrize("halt_after", [0, 3, 10], ids=["before-any-step", "mid-pass",
                                                       "after-the-last-step"])
def test_a_halted_batch_continues_into_the_batch_that_never_stopped(halt_after):
    """Halted after some steps (or with every step taken and passes still to encode), a
    batch keeps its steps and whole passes; continued, it is the uninterrupted batch, bit
    for bit: frames, transitions and embeddings."""
    cfg = load_config(CONFIGS / "quickstart.yaml", ["env.num_envs=2", "agent.train_freq=10",
                                                     "reward.stream_frames=4"])
    model = make_reward_model(cfg)
    straight = _collection(cfg, model)
    want_batch, want_embeddings = straight._collect(True)
    cut = _collection(cfg, model)
    add, added = cut.stream.add, [0]

    def halting_add(frames):
        add(frames)
        added[0] += 1
        if added[0] == halt_after:
            cut.loop.halt.set()

    encode, passes = cut.stream.encode, [0]

    def slow_encode(frames):  # from the 3rd pass on, passes are left when the steps end
        passes[0] += 1
        if passes[0] >= 3:
            time.sleep(0.5)
        return encode(frames)

    cut.stream.encode, cut.stream.add = slow_encode, halting_add
    if halt_after == 0:
        cut.loop.halt.set()
    partial = cut._collect(True)
    assert isinstance(partial, Partial) and partial.steps == halt_after and partial.random
    assert partial.encoded % 2 == 0 and partial.encoded <= partial.steps  # whole passes
    if halt_after == 10:
        assert 4 <= partial.encoded < 10
    cut.loop.halt = Halt()  # a resumed run's
    batch, embeddings = cut._collect(partial.random, partial)
    for key in want_batch.keys(True, True):
        assert torch.equal(batch[key], want_batch[key]), key
    assert PIXELS in batch[NEXT].keys()
    assert torch.equal(embeddings, want_embeddings)
    for c in (straight, cut):
        c.close()
        c.loop.env.close()


def test_the_stop_latency_note_names_what_to_lower():
    assert stop_latency_note(2.0, 64, True, 1.0, 60.0) is None
    streamed = stop_latency_note(90.0, 3200, True, 1.0, 60.0)
    assert "about 91 s" in streamed and "reward.stream_frames" in streamed
    assert "logging.stop_timeout_s=60" in streamed
    whole = stop_latency_note(90.0, 3200, False, 1.0, 60.0)
    assert "reward.stream_frames" in whole and "scored in one go" in whole
    updates = stop_latency_note(1.0, 64, True, 80.0, 60.0)
    assert "agent.gradient_steps" in updates


def _probe(out: Path, runs: Path, name: str, extra: list[str], *flags: str) -> list[str]:
    return [sys.executable, PROBE, str(out), *flags, *RUN, *extra,
            f"logging.output_dir={runs}", f"logging.run_name={name}"]


def _start(cmd: list[str], variant: str) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=variant in GROUP_SIGNALS)


def _send(proc: subprocess.Popen, sig: int, variant: str) -> None:
    if variant in GROUP_SIGNALS:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)


def _final(out: Path, rank: int) -> dict:
    return torch.load(out / f"rank{rank}.pt", weights_only=False)


@pytest.mark.parametrize("variant", [
    "process",
    pytest.param("parallel", marks=pytest.mark.slow),
    pytest.param("ddp", marks=pytest.mark.slow),
])
def test_sigterm_mid_iteration_checkpoints_a_partial_batch_and_resumes_exactly(variant,
                                                                              tmp_path):
    extra, runs = VARIANTS[variant], tmp_path / "runs"
    ranks = 2 if variant == "ddp" else 1
    # The run that never stops goes alongside the one that is stopped: they share nothing.
    # Not under DDP: two pairs of ranks on two cores would each wait on the other's.
    straight_log = tmp_path / "straight.err"
    with straight_log.open("w") as log:
        straight = subprocess.Popen(_probe(tmp_path / "straight", runs, "straight", extra),
                                    stdout=subprocess.DEVNULL, stderr=log)
    try:
        if ranks > 1:
            straight.wait(timeout=600)
        _stop_mid_iteration(variant, extra, runs, tmp_path)
        straight.wait(timeout=600)
    finally:
        if straight.poll() is None:
            straight.kill()
            straight.wait()
    assert straight.returncode == 0, straight_log.read_text()[-3000:]
    _resume_equals_straight(ranks, runs, tmp_path)


def _stop_mid_iteration(variant: str, extra: list[str], runs: Path, tmp_path: Path) -> None:
    stopped = _start(_probe(tmp_path / "stopped", runs, "split", extra, "--arm-at", ARM_AT),
                     variant)
    _wait_for(tmp_path / "stopped" / "armed", stopped)
    ckpts = runs / "split" / "checkpoints"
    _send(stopped, signal.SIGTERM, variant)
    sent = time.monotonic()
    while resumable_checkpoint(ckpts) is None and stopped.poll() is None:
        time.sleep(0.05)
    found = resumable_checkpoint(ckpts)
    waited = time.monotonic() - sent
    out, err = stopped.communicate(timeout=300)
    assert stopped.returncode == EXIT_INTERRUPTED, err[-3000:]
    assert found is not None and waited < STOP_TIMEOUT_S, (waited, err[-3000:])
    print(f"{variant}: resumable checkpoint {waited:.2f} s after SIGTERM")

    # The stop did not wait for the iteration: rank 0 saved its batch cut short, with its
    # steps so far and the passes encoded, at the step the iteration began.
    steps = read_meta(found)["env_steps"]
    assert steps == int(ARM_AT)
    state = torch.load(ckpts / data_dir_name(f"step-{steps}", 0) / STATE, weights_only=True)
    partial = state["data"]["collection"]["pending"]["partial"]
    assert 3 <= partial["shape"][-1] < 16 and partial["embeddings"] is not None
    assert partial["embeddings"].shape[-2] <= partial["shape"][-1]


def _resume_equals_straight(ranks: int, runs: Path, tmp_path: Path) -> None:
    resumed = subprocess.run([sys.executable, PROBE, str(tmp_path / "resumed"), "--resume",
                              str(runs / "split")], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for rank in range(ranks):
        ours, theirs = _final(tmp_path / "resumed", rank), _final(tmp_path / "straight", rank)
        assert ours["env_steps"] == theirs["env_steps"] == 320
        for name, value in theirs["params"].items():
            assert torch.equal(ours["params"][name], value), (rank, name)
        _assert_same_tree(ours["replay"], theirs["replay"], f"rank {rank} replay")


def _assert_same_tree(ours: dict, theirs: dict, where: str) -> None:
    assert ours.keys() == theirs.keys(), where
    for key, value in theirs.items():
        if isinstance(value, dict):
            _assert_same_tree(ours[key], value, f"{where}.{key}")
        else:
            assert torch.equal(ours[key], value), f"{where}.{key}"


@pytest.mark.parametrize("variant", [
    "process",
    pytest.param("parallel", marks=pytest.mark.slow),
    # Rank 1's replay buffer holds 5 semaphores (TorchRL's shared counters): it must exit on
    # its own, finalizers run, before rank 0's launcher kills what is left.
    pytest.param("ddp", marks=pytest.mark.slow),
])
def test_a_second_sigint_exits_at_once_and_leaves_no_process(variant, tmp_path):
    """The first Ctrl-C lands while a long update phase runs (2,000 updates, which a stop
    lets finish); the second, a second later, must not wait for it."""
    extra = [*VARIANTS[variant], "agent.gradient_steps=2000"]
    proc = _start(_probe(tmp_path / "out", tmp_path / "runs", "twice", extra,
                         "--arm-at", ARM_AT), variant)
    _wait_for(tmp_path / "out" / "armed", proc)
    descendants = psutil.Process(proc.pid).children(recursive=True)
    assert descendants  # the collector or env workers (and DDP's rank 1)
    _send(proc, signal.SIGINT, variant)
    time.sleep(1.0)
    _send(proc, signal.SIGINT, variant)
    proc.wait(timeout=5)
    assert proc.returncode == EXIT_INTERRUPTED
    _, alive = psutil.wait_procs(descendants, timeout=1)
    assert not _running(alive), alive
    _, err = proc.communicate(timeout=30)  # its stderr closes once every holder exited
    assert "resource_tracker" not in err and "leaked" not in err, err[-3000:]
    assert "second signal: exiting now" in err
    assert "No checkpoint to resume from exists yet." in err, err[-3000:]


def _running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running: an exited orphan stays a zombie until init reaps it."""
    out = []
    for proc in procs:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def test_env_parallel_workers_outlive_a_signal_to_the_process_group():
    """A terminal's Ctrl-C (or a job's SIGTERM) reaches every process of the group: the env
    workers must still answer when the stop reads their envs; the training process closes
    them."""
    cfg = load_config(CONFIGS / "quickstart.yaml", ["env.num_envs=2", "env.parallel=true"])
    env = make_env(cfg.env, (64, 64), from_pixels=True, seed=3)
    try:
        workers = vector_envs(env)
        pids = [facts["pid"] for facts in workers.process_facts()]
        os.kill(pids[0], signal.SIGINT)
        os.kill(pids[1], signal.SIGTERM)
        time.sleep(0.5)
        assert len(workers.gym_states()) == 2
        assert all(psutil.pid_exists(pid) for pid in pids)
    finally:
        env.close()
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)],
                                 timeout=10)
    assert not _running(alive)
