"""Streamed scoring: with ``agent.overlap``, a batch's frames are encoded on a scoring thread
while the rest of the batch is still being stepped and rendered.

Without it the collection thread renders the whole batch, then scores it: on a machine where
rendering and the image encoder both cost, the two add up even with overlap. Streamed, the
encoder runs beside the renderers (and the learner), so the slowest of the three sets the
pace. Passes are cut at fixed step counts, never by timing: an encoder's float result for a
frame can depend on the batch it is in (measured for fp32 on CPU), and a run must not depend
on thread timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import torch
from torch import Tensor

from vlmrm.keys import NEXT, PIXELS

#: Maps uint8 frames ``[N, H, W, 3]`` to embeddings ``[N, D]`` (the scoring seam's
#: ``Scorer.encoder``: an ``EmbeddingRewardModel``'s ``encode_images``).
Encoder = Callable[[Tensor], Tensor]


def steps_per_pass(frames: int, batch_size: int, num_envs: int) -> int:
    """Env steps of ``num_envs`` frames each in a pass of about ``frames`` frames: at least one
    step, and no more frames than ``batch_size`` (the encoder's most per forward pass)."""
    return max(1, min(frames, batch_size) // num_envs)


class FrameStream:
    """Encodes a rollout's frames in passes of ``steps`` env steps (every env's frame of each),
    each pass on the scoring thread as soon as its steps are rendered.

    :meth:`begin` a rollout, :meth:`add` each step's frames, :meth:`finish` for the
    embeddings. The scoring thread keeps the process's torch thread count.
    """

    def __init__(self, encode: Encoder, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"a pass needs at least one step, got {steps}")
        self.encode = encode
        self.steps = steps
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vlmrm-score",
                                        initializer=torch.set_num_threads,
                                        initargs=(torch.get_num_threads(),))
        self._frames: list[Tensor] = []
        self._passes: list[Future[tuple[Tensor, float]]] = []

    def begin(self, partial: Any = None) -> None:  # a vlmrm.collect.loop.Partial (no cycle)
        """Start a rollout, dropping what a failed one left (its errors included); or go on
        with ``partial``'s: its encoded passes kept, its other steps' frames passed again, so
        that passes are cut where they would have been."""
        passes, self._passes, self._frames = self._passes, [], []
        for p in passes:
            p.exception()  # waits for it
        if partial is None or partial.batch is None:
            return
        if partial.embeddings is not None:
            done: Future[tuple[Tensor, float]] = Future()
            done.set_result((partial.embeddings.movedim(-2, 0), partial.encode_s))
            self._passes.append(done)
        frames = partial.batch.get((NEXT, PIXELS))
        for t in range(partial.encoded, partial.steps):
            self.add(frames.select(partial.batch.ndim - 1, t))

    def add(self, frames: Tensor) -> None:
        """One env step's frames, ``[*env batch, H, W, 3]``."""
        self._frames.append(frames)
        if len(self._frames) == self.steps:
            self._submit()

    def finish(self, halt: Any = None) -> tuple[Tensor, float] | None:
        """Embeddings ``[*env batch, T, D]`` of the steps added since :meth:`begin` (the layout
        of a rollout), and the seconds the scoring thread spent encoding them; None when
        ``halt`` is set before every pass is done (:meth:`cut` then keeps what is)."""
        if self._frames:
            self._submit()
        if halt is not None:
            for p in self._passes:
                while not p.done():
                    if halt.is_set():
                        return None
                    wait([p], timeout=0.05)  # waking to look at the halt
        results = self._wait()
        if not results:
            raise RuntimeError("no frames were added to the stream")
        return self._join(results)

    def cut(self) -> tuple[Tensor | None, float]:
        """Stop at the pass being encoded: the passes not started are dropped, and the
        embeddings ``[*env batch, T, D]`` of the passes done (None: none) are returned with
        their seconds. The frames not yet submitted are dropped too (the batch holds them)."""
        self._frames = []
        for p in self._passes:
            p.cancel()  # only passes not started yet
        passes, self._passes = self._passes, []
        results = [p.result() for p in passes if not p.cancelled()]
        return self._join(results) if results else (None, 0.0)

    @staticmethod
    def _join(results: list[tuple[Tensor, float]]) -> tuple[Tensor, float]:
        embeddings = torch.cat([e for e, _ in results])  # [T, *env batch, D]
        return embeddings.movedim(0, -2), sum(s for _, s in results)

    def close(self) -> None:
        self._wait()
        self._pool.shutdown(wait=True)

    def _submit(self) -> None:
        chunk, self._frames = torch.stack(self._frames), []
        self._passes.append(self._pool.submit(self._encode, chunk))

    def _encode(self, chunk: Tensor) -> tuple[Tensor, float]:
        t0 = time.perf_counter()
        embeddings = self.encode(chunk.reshape(-1, *chunk.shape[-3:]))
        return embeddings.reshape(*chunk.shape[:-3], -1), time.perf_counter() - t0

    def _wait(self) -> list[tuple[Tensor, float]]:
        """Every pass submitted, in order (re-raising the first failure)."""
        passes, self._passes = self._passes, []
        return [p.result() for p in passes]
