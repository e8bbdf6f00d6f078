"""The step loop in a process of its own (``agent.collector=process``).

With ``agent.overlap`` the learner and the collection run at the same time, but two threads
of one Python process take turns at the interpreter lock: every env step, policy forward and
frame copy on the collection thread holds it, and every small kernel the learner launches
waits for it. Measured on an H100 machine with 16 cores (docs/design-notes.md, "How fast,
measured"), the quick start's loop then ran at 107 env steps/s while its slowest stage alone
ran at 231, and the humanoid's envs stepped at 127 env steps/s in the loop against 197 alone.

Here the envs, the exploring policy and the step loop live in a child process; the parent's
collection thread only waits on a pipe (the lock released), receives each batch (frames
through shared memory, small tensors by value, see :func:`pack`) and scores it. Every
rollout is the one a :class:`~vlmrm.collect.loop.StepLoop` in the parent would collect (same
seeds, same generator, same weights; checked bit for bit in
tests/rl/test_collect_process.py), and :meth:`ProcessStepLoop.state` is the same state, so
checkpoints are interchangeable between the two.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor, nn
from torchrl.envs import EnvBase

from vlmrm.collect.loop import Halt, StepLoop
from vlmrm.config.schema import AgentConfig
from vlmrm.interrupt import end_process
from vlmrm.keys import NEXT, PIXELS
from vlmrm.sac.exploration import ExplorationSampler, actor_network

#: Seconds :meth:`ProcessStepLoop.close` waits for the child to close its envs and exit.
CLOSE_TIMEOUT_S = 60.0


class CollectorDied(RuntimeError):
    """The collector process ended while the parent still needed it."""


class ProcessStepLoop:
    """A :class:`~vlmrm.collect.loop.StepLoop` run in a child process, with the same methods.

    The child builds the envs with ``build_env`` (a picklable callable, e.g. a
    ``functools.partial`` of :func:`vlmrm.envs.factory.make_env`; ``env.parallel`` workers are then
    the child's children), a copy of the policy ``network`` and an
    :class:`~vlmrm.collect.loop.ExplorationSampler` on a generator seeded with ``seed``. As with
    a ``StepLoop``, calls other than :meth:`rollout` are made only while no rollout runs.
    ``resize_frames`` (picklable) is the child ``StepLoop``'s: frames cross already resized.
    """

    def __init__(self, build_env: Callable[[], EnvBase], network: nn.Module, agent: AgentConfig,
                 seed: int, threads: int | None = None,
                 resize_frames: Callable[[Tensor], Tensor] | None = None) -> None:
        # Spawn: a fresh interpreter that sees os.environ as it is now. (A fork server would
        # start later collectors faster but hand them the environment of the moment the
        # server started, e.g. a finished run's VLMRM_RUN_DIR.)
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        network = copy.deepcopy(network).cpu()  # CUDA tensors would start CUDA in the child
        threads = threads or torch.get_num_threads()
        #: Shared with the child's loop: set, its rollout returns before the next step.
        self.halt = Halt()
        self._process = ctx.Process(target=serve, name="vlmrm-collector", daemon=False,
                                    args=(child, build_env, network, agent, seed, threads,
                                          resize_frames, self.halt))
        self._process.start()
        child.close()  # the parent's copy: the child's end closes when the child exits
        self._num_envs: int = self._call("ready")

    @property
    def num_envs(self) -> int:
        return self._num_envs

    def rollout(self, steps: int, random: bool,
                on_frames: Callable[[Tensor], None] | None = None) -> TensorDictBase | None:
        """As :meth:`StepLoop.rollout`. Streamed (``on_frames``), each step's frames cross
        once: they are handed on as they arrive and stacked back into the batch."""
        frames: list[Tensor] = []

        def received(step_frames: Tensor) -> None:
            frames.append(step_frames)
            on_frames(step_frames)

        packed = self._call("rollout", steps, random, on_frames is not None,
                            on_frames=received if on_frames is not None else None)
        if packed is None:  # halted before the first step
            return None
        batch = unpack(packed)
        if frames:
            batch.set((NEXT, PIXELS), torch.stack(frames, dim=batch.ndim - 1))
        return batch

    def sync(self, actor: nn.Module) -> None:
        """Sent without waiting for an answer: the child applies it before the next request,
        and a failure comes back as that request's error (a round trip saved per batch)."""
        weights = [p.detach().cpu().numpy().copy() for p in actor_network(actor).parameters()]
        self._send(("sync", weights))  # numpy arrays: pickled by value, no segment each

    def state(self, exact: bool = True) -> dict[str, Any]:
        return self._call("state", exact)

    def load_state(self, state: dict[str, Any], restart: int | None = None) -> None:
        self._call("load_state", state, restart)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Ask the child to close its envs and exit; past ``timeout`` seconds, kill it with
        the processes it started (its process group: it ignores SIGTERM, which a cluster
        sends to every process of a job)."""
        if self._process.is_alive():
            try:
                self._conn.send(("close",))
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout)
        if self._process.is_alive():
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self._process.kill()
            self._process.join()
        self._conn.close()

    def _call(self, request: str, *args: Any,
              on_frames: Callable[[Tensor], None] | None = None) -> Any:
        """Send ``request`` (except "ready", which the child sends unasked) and wait for its
        answer; ``("frames", tensor)`` messages on the way go to ``on_frames``."""
        if request != "ready":
            self._send((request, *args))
        earlier: BaseException | None = None  # an unanswered request's failure
        while True:
            kind, value, *failed_request = self._receive()
            if kind == "frames":  # sent only for a streamed rollout, which passes on_frames
                on_frames(value)
            elif kind == "error" and failed_request and failed_request[0] in UNANSWERED:
                earlier = earlier or value  # raised once this request's answer is read
            elif kind == "error":
                raise value
            elif earlier is not None:
                raise earlier
            else:
                return value

    def _send(self, message: tuple) -> None:
        try:
            self._conn.send(message)
        except (BrokenPipeError, OSError) as err:
            raise self._died() from err

    def _receive(self) -> tuple[str, Any]:
        try:
            return self._conn.recv()
        except (EOFError, OSError) as err:
            raise self._died() from err

    def _died(self) -> CollectorDied:
        self._process.join(5)
        return CollectorDied(
            f"The collector process (pid {self._process.pid}) ended with exit code "
            f"{self._process.exitcode} while training still needed it; its own error, if it "
            "printed one, is above. Rerun with agent.collector=thread to collect in this "
            "process and see the error here.")


# -- the child ----------------------------------------------------------------------------
def serve(conn: Connection, build_env: Callable[[], EnvBase], network: nn.Module,
          agent: AgentConfig, seed: int, threads: int,
          resize_frames: Callable[[Tensor], Tensor] | None = None,
          halt: Halt | None = None) -> None:
    """The child's main: build the loop, then answer requests until "close" (or the parent
    is gone). Interrupts are the parent's to handle: it sets ``halt`` to cut a rollout short
    and closes this process when it stops. A process group of its own lets the parent end
    this process and its env workers together if closing hangs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.setpgid(0, 0)
    torch.set_num_threads(threads)
    loop: StepLoop | None = None
    try:
        env = build_env()
        sampler = ExplorationSampler(network, env.action_spec_unbatched, agent,
                                     torch.Generator().manual_seed(seed))
        loop = StepLoop(env, sampler, resize_frames, halt)
        conn.send(("ready", env.numel()))
        while _answer(conn, loop):
            pass
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone
    except BaseException as err:
        _send_error(conn, err)
    finally:
        if loop is not None and not loop.env.is_closed:
            loop.env.close()
        conn.close()
    # Multiprocessing's own finalizers run, the interpreter's teardown does not: that
    # teardown (library destructors, in C) took 5 s here, and a stop must not wait for it.
    end_process(0)


def _answer(conn: Connection, loop: StepLoop) -> bool:
    """Answer one request; False once asked to close."""
    request, *args = conn.recv()
    if request == "close":
        return False
    try:
        result = HANDLERS[request](conn, loop, *args)
        if request not in UNANSWERED:
            conn.send(("done", result))
    except (EOFError, BrokenPipeError):
        raise
    except Exception as err:  # the parent raises it; the child keeps serving
        _send_error(conn, err, request)
    return True


def _rollout(conn: Connection, loop: StepLoop, steps: int, random: bool, stream: bool
             ) -> TensorDictBase:
    on_frames = (lambda frames: conn.send(("frames", frames))) if stream else None
    batch = loop.rollout(steps, random, on_frames)
    if batch is None:
        return None
    return pack(batch.exclude((NEXT, PIXELS)) if stream else batch)  # the parent has the frames


def _sync(conn: Connection, loop: StepLoop, weights: list[np.ndarray]) -> None:
    loop.sampler.set_weights([torch.from_numpy(w) for w in weights])


#: Tensors up to this size cross the pipe by value; larger ones (frames) in shared memory.
BY_VALUE_BYTES = 1 << 16


def pack(batch: TensorDictBase) -> tuple[dict[str, Any], list[int]]:
    """``batch`` for the pipe: small tensors as numpy arrays, which pickle by value, where
    torch's multiprocessing pickler would give every tensor a shared-memory segment of its own
    (about 0.1 ms each; a batch has a dozen)."""
    def one(t: Tensor) -> Tensor | np.ndarray:
        return t.numpy() if t.numel() * t.element_size() <= BY_VALUE_BYTES else t

    return _map(batch.to_dict(), one), list(batch.batch_size)


def unpack(packed: tuple[dict[str, Any], list[int]]) -> TensorDictBase:
    tree, batch_size = packed
    return TensorDict(_map(tree, lambda t: torch.from_numpy(t) if isinstance(t, np.ndarray)
                           else t), batch_size=batch_size)


def _map(tree: dict[str, Any], fn: Callable[[Any], Any]) -> dict[str, Any]:
    return {k: _map(v, fn) if isinstance(v, dict) else fn(v) for k, v in tree.items()}


#: Requests the parent does not wait for (only an error is sent back, answering the next).
UNANSWERED = frozenset({"sync"})

HANDLERS: dict[str, Callable[..., Any]] = {
    "rollout": _rollout,
    "sync": _sync,
    "state": lambda conn, loop, exact=True: loop.state(exact),
    "load_state": lambda conn, loop, state, restart=None: loop.load_state(state, restart),
}


def _send_error(conn: Connection, err: BaseException, request: str | None = None) -> None:
    """Send ``err`` (raised answering ``request``; None: building the loop) to the parent as
    it is, or as a RuntimeError with its traceback when it does not survive pickling."""
    try:
        pickle.loads(pickle.dumps(err))
        message: BaseException = err
    except Exception:
        text = "".join(traceback.format_exception(err)).strip()
        message = RuntimeError(f"in the collector process: {text}")
    try:
        conn.send(("error", message, request))
    except (EOFError, BrokenPipeError, OSError):
        pass
