"""Collection: the env step loop that feeds training, inline (``agent.overlap=false``) or
one batch ahead on a background thread (``agent.overlap=true``), with a policy snapshot.

The step loop runs here, on that thread, or with ``agent.collector=process`` (the default)
in a process of its own (:mod:`vlmrm.collect.process`), which collects the same batches
and keeps the collection's Python off the learner's interpreter lock; its state travels back
for checkpoints through :meth:`StepLoop.state`.

Sequential order (``agent.overlap=false``): the snapshot is synced right before each batch
and every random number comes from torch's global generator, in the order TorchRL's
``Collector`` drew them, so runs reproduce the loop as it was before overlap existed (checked
against a recorded reference, tests/rl/test_sequential_reference.py).

Determinism with overlap: the learner draws from torch's global generator (the actor loss's
reparameterisation, TorchRL's losses) while the collection runs, so the collection must not:
:class:`ExplorationSampler` draws random-phase actions, policy samples and the
``agent.action_noise`` process from its own ``torch.Generator`` (seeded per rank). The policy
is a snapshot of the actor taken only while no collection is in flight (at the start of
each iteration), so which weights collect which batch never depends on timing.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor, nn
from torchrl.envs import EnvBase

from vlmrm.collect.stream import FrameStream
from vlmrm.envs.envstate import env_state, load_env_state
from vlmrm.keys import ACTION, DONE, NEXT, OBSERVATION, PIXELS
from vlmrm.sac.exploration import ExplorationSampler

#: A batch's streamed embeddings ``[*env batch, T, D]`` and the seconds spent encoding them.
Streamed = tuple[Tensor, float]


class Halt:
    """A stop flag that the step loop checks before each env step and the scoring stream
    before each encoder pass (a bounded stop, :mod:`vlmrm.interrupt`). Set from a signal
    handler; shared memory without a lock, so a collector process started with it sees it too
    and nothing is left for ``resource_tracker`` to report."""

    def __init__(self) -> None:
        self._flag = multiprocessing.get_context("spawn").RawValue("b", 0)

    def set(self) -> None:
        self._flag.value = 1

    def is_set(self) -> bool:
        return bool(self._flag.value)


class StepLoop:
    """Steps a TorchRL env (one env, a ``SerialEnv``, or ``env.parallel``'s workers) with an
    :class:`ExplorationSampler`, ``steps`` steps per call.

    Without TorchRL's ``Collector`` (its per-step bookkeeping cost ~2-3 ms, measured), it
    keeps the same keys: ``observation``, ``action``, the done flags, and under ``next`` the
    env's outputs (``pixels``, ``reward``, ``done``, ``terminated``, ``truncated``,
    ``is_success``); the root ``pixels`` (the previous step's ``next`` frame) are dropped.

    ``resize_frames`` (the reward model's resize, e.g.
    :meth:`~vlmrm.backends.preprocess.ImagePreprocessor.resize_frames`) shrinks each step's frames
    where they are rendered, so that envs rendering at a fixed size (classic control,
    ``vlmrm/CartPole-v0``) do not carry full-size frames to the scorer, across processes
    for the process collector.
    """

    def __init__(self, env: EnvBase, sampler: ExplorationSampler,
                 resize_frames: Callable[[Tensor], Tensor] | None = None,
                 halt: Halt | None = None) -> None:
        self.env = env
        self.sampler = sampler
        self.resize_frames = resize_frames
        #: Once set, :meth:`rollout` returns before its next step.
        self.halt = halt or Halt()
        # Reset now, as TorchRL's Collector does when it is built: the envs' first states
        # then do not depend on what else is built before the first batch.
        #: The root TensorDict the next step starts from.
        self.root: TensorDictBase = env.reset()
        #: Envs at the first step of an episode (restarts the OU noise).
        self.starts: Tensor = torch.ones(env.batch_size, dtype=torch.bool)

    @property
    def num_envs(self) -> int:
        return self.env.numel()

    @torch.no_grad()
    def rollout(self, steps: int, random: bool,
                on_frames: Callable[[Tensor], None] | None = None) -> TensorDictBase | None:
        """``[*env batch, steps]`` transitions; ``on_frames`` gets each step's rendered frames
        ``[*env batch, H, W, 3]`` as soon as they exist (streamed scoring). Once :attr:`halt`
        is set, the steps taken so far (None: none), and the loop's state is that after them."""
        out = []
        for _ in range(steps):
            if self.halt.is_set():
                break
            td = self.root.exclude(PIXELS)
            td.set(ACTION, self.sampler(td.get(OBSERVATION), random, self.starts))
            td, self.root = self.env.step_and_maybe_reset(td)
            self.starts = td.get((NEXT, DONE)).reshape(self.env.batch_size)
            if self.resize_frames is not None:
                td.set((NEXT, PIXELS), self.resize_frames(td.get((NEXT, PIXELS))))
            if on_frames is not None:
                on_frames(td.get((NEXT, PIXELS)))
            out.append(td)
        return torch.stack(out, dim=len(self.env.batch_size)) if out else None

    def sync(self, actor: nn.Module) -> None:
        """The exploring policy takes the actor's current weights (only between rollouts)."""
        self.sampler.sync(actor)

    def state(self, exact: bool = True) -> dict[str, Any]:
        """The sampler (generator, noise, policy snapshot), the next step's input and the
        envs' own state (without ``exact``: only that they restart): what a checkpoint
        needs to continue the same rollouts."""
        return {"sampler": self.sampler.state(),
                "snapshot": {k: v.clone() for k, v in self.sampler.network.state_dict().items()},
                "root": self.root.exclude(PIXELS).to_dict(), "starts": self.starts.clone(),
                "env": env_state(self.env, exact)}

    def load_state(self, state: dict[str, Any], restart: int | None = None) -> None:
        """Continue from :meth:`state`; envs captured without their state are reseeded with
        ``restart`` and reset, so every env starts an episode."""
        self.sampler.load_state(state["sampler"])
        self.sampler.network.load_state_dict(state["snapshot"])
        if load_env_state(self.env, state["env"], restart):
            self.root = self.env.reset()
            self.starts = torch.ones(self.env.batch_size, dtype=torch.bool)
            return
        self.root = TensorDict(state["root"], batch_size=self.env.batch_size)
        self.starts = state["starts"].clone()

    def close(self) -> None:
        """Nothing to stop: the envs belong to whoever built them."""


class BackgroundCollection:
    """One batch at a time on a background thread: :meth:`start` one, :meth:`wait` for it.

    ``collect(random)`` runs on the thread. Between :meth:`wait` and the next :meth:`start`
    nothing runs there, so the caller may read or change anything ``collect`` uses (the
    policy snapshot, the random state, the envs).
    """

    def __init__(self, collect: Callable[..., TensorDictBase]) -> None:
        self._collect = collect
        self._threads = torch.get_num_threads()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vlmrm-collect",
                                        initializer=self._init_thread)
        self._job: Future[TensorDictBase] | None = None

    def _init_thread(self) -> None:
        # Intra-op thread counts are per thread in OpenMP: keep the process's setting.
        torch.set_num_threads(self._threads)

    @property
    def in_flight(self) -> bool:
        return self._job is not None

    def start(self, random: bool, *more: Any) -> None:
        """Collect ``collect(random, *more)`` on the thread."""
        if self._job is not None:
            raise RuntimeError("a batch is already being collected")
        self._job = self._pool.submit(self._collect, random, *more)

    def wait(self) -> TensorDictBase:
        """The batch started last (re-raising what the collection raised)."""
        if self._job is None:
            raise RuntimeError("no batch is being collected")
        job, self._job = self._job, None
        return job.result()

    def close(self) -> None:
        """Let a batch in flight finish (envs must not close under it), then stop."""
        if self._job is not None:
            self._job.exception()  # waits; its error, if any, no longer matters
            self._job = None
        self._pool.shutdown(wait=True)


@dataclass
class Partial:
    """A batch cut short by a halt: its steps so far ``[*env batch, steps]`` with their
    frames (None before the first step), whether it is a random-phase batch, and, when
    scored in passes, the embeddings ``[*env batch, encoded, D]`` of its first encoded steps
    (whole passes) and the seconds they took."""

    batch: TensorDictBase | None
    random: bool
    embeddings: Tensor | None = None
    encode_s: float = 0.0

    @property
    def steps(self) -> int:
        return 0 if self.batch is None else self.batch.shape[-1]

    @property
    def encoded(self) -> int:
        return 0 if self.embeddings is None else self.embeddings.shape[-2]


def join_steps(first: TensorDictBase | None, rest: TensorDictBase | None
               ) -> TensorDictBase | None:
    """Two runs of steps ``[*env batch, T]`` one after the other (None: no steps)."""
    if first is None or rest is None:
        return rest if first is None else first
    return torch.cat([first, rest], dim=first.ndim - 1)


class Collection:
    """The batches training learns from, ``[*env batch, steps]`` each.

    :meth:`next` returns batch k. Without ``overlap`` it collects it there and then with the
    actor's current weights. With ``overlap`` batch k was collected on the background thread
    while the learner scored and learned from batch k-1, with the weights the actor had when
    k-1 arrived: a one-batch policy lag, which off-policy SAC tolerates. The snapshot always
    holds the weights meant for the next batch, so a batch collected inline (after
    ``prefetch=False``) is the same batch the thread would have collected.
    """

    def __init__(self, loop: StepLoop, steps: int, random_batches: int, overlap: bool,
                 stream: FrameStream | None = None) -> None:
        if stream is not None and not overlap:
            raise ValueError("streamed scoring needs overlap: the sequential loop scores a "
                             "batch once it is complete, as it always did")
        self.loop = loop
        #: Encodes frames while the batch is still being collected.
        self.stream = stream
        self.steps = steps
        self.random_batches = random_batches
        self.overlap = overlap
        #: Applied to each batch where it is collected, with the seconds collecting took and,
        #: when streamed, the frames' embeddings and encoding seconds (the data pipeline
        #: scores there); None hands out the raw batch.
        self.after: Callable[[TensorDictBase, float, Streamed | None], Any] | None = None
        #: Batches started so far (the first ``random_batches`` use uniform random actions).
        self.started = 0
        self._background = BackgroundCollection(self._collect) if overlap else None
        #: A finished batch that :meth:`pause` took off the thread (handed out next), or a
        #: :class:`Partial` one (continued next).
        self.pending: Any = None
        #: A batch handed out and given back unused (handed out before :attr:`pending`).
        self.held: Any = None

    def _collect(self, random: bool, partial: Partial | None = None) -> Any:
        """A batch (scored by :attr:`after`), or a :class:`Partial` once the loop's halt is
        set; ``partial`` continues one such batch exactly where it was cut."""
        if partial is not None and self.loop.halt.is_set():
            return partial  # nothing more to do before the stop
        t0 = time.perf_counter()
        if self.stream is not None:
            self.stream.begin(partial)
        on_frames = None if self.stream is None else self.stream.add
        done = 0 if partial is None else partial.steps
        batch = join_steps(None if partial is None else partial.batch,
                           self.loop.rollout(self.steps - done, random, on_frames))
        seconds = time.perf_counter() - t0
        if batch is None or batch.shape[-1] < self.steps:
            return self._cut(batch, random)
        streamed = None
        if self.stream is not None:
            streamed = self.stream.finish(self.loop.halt)
            if streamed is None:  # halted while passes were left to encode
                return self._cut(batch, random)
        if self.after is None:
            return batch
        return self.after(batch, seconds, streamed)

    def _cut(self, batch: TensorDictBase | None, random: bool) -> Partial:
        embeddings, encode_s = (None, 0.0) if self.stream is None else self.stream.cut()
        return Partial(batch, random, embeddings, encode_s)

    def _take_random(self) -> bool:
        random = self.started < self.random_batches
        self.started += 1
        return random

    @property
    def in_flight(self) -> bool:
        return self._background is not None and self._background.in_flight

    @property
    def holds_batch(self) -> bool:
        """A batch in flight or taken off the thread and not yet handed out: the envs and
        the sampler are then ahead of the batches handed out."""
        return self.in_flight or self.pending is not None or self.held is not None

    def next(self, actor: nn.Module, prefetch: bool = True) -> Any:
        """The next batch; with overlap, also start the one after unless ``prefetch`` is
        False (before a checkpoint or the end, when nothing may be left in flight). Once the
        loop's halt is set, a :class:`Partial` instead, also kept as :attr:`pending` (a
        checkpoint saves it; a resumed run continues it)."""
        if self.held is not None:
            return self._hand_back(prefetch)
        if self._background is None:
            self.loop.sync(actor)
            batch = self._resume_pending()
        else:
            self.pause()
            batch = self._resume_pending()
            if not isinstance(batch, Partial):
                self.loop.sync(actor)
                if prefetch:
                    self._background.start(self._take_random())
        if isinstance(batch, Partial):
            self.pending = batch
        return batch

    def _hand_back(self, prefetch: bool) -> Any:
        """The held batch. The batch after it was started with the weights meant for it,
        and its partial steps continue on the thread (the snapshot is not synced again)."""
        batch, self.held = self.held, None
        if prefetch and self._background is not None and isinstance(self.pending, Partial):
            partial, self.pending = self.pending, None
            self._background.start(partial.random, partial)
        return batch

    def _resume_pending(self) -> Any:
        """The pending batch (a partial one continued first), else a new one."""
        batch, self.pending = self.pending, None
        if batch is None:
            return self._collect(self._take_random())
        if isinstance(batch, Partial):
            return self._collect(batch.random, batch)
        return batch

    def pause(self) -> None:
        """Wait for the batch in flight (kept for the next :meth:`next`), so the caller may
        use the envs, the reward model or the random state meanwhile."""
        if self.in_flight:
            self.pending = self._background.wait()

    def close(self) -> None:
        if self._background is not None:
            self._background.close()
        if self.stream is not None:
            self.stream.close()
        self.loop.close()
