"""The data side of a checkpoint: what one rank needs, beyond the networks and optimizer
Lightning saves, to continue a run exactly where it stopped.

Each rank writes a folder of its own beside the checkpoint, ``step-<env steps>.data-r<rank>``
(Lightning writes the ``.ckpt`` on rank 0 only): ``state.pt`` (plain tensors, numbers,
strings, lists and dicts, loaded with ``torch.load(weights_only=True)``) and ``replay/``
(:mod:`vlmrm.sac.replay_state`, memory-mapped, no pickle), then ``manifest.json`` last: every
other file's path and size. The folder is written under a temporary name, flushed to disk
(files and folders) and renamed when complete; every rank's folder is complete before rank 0
writes the checkpoint, so a checkpoint file never points at a partial folder. Resume checks
the manifest (:func:`data_state_problem`) before using a folder: after a power loss or a
copy that lost files, an incomplete folder is found and not loaded.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from vlmrm.collect.loop import Collection, Partial
from vlmrm.collect.pipeline import DataPipeline, ScoredBatch
from vlmrm.envs.envstate import env_state, load_env_state, restart_seed
from vlmrm.envs.factory import SeedPurpose, env_seed
from vlmrm.fileio import atomic_dir
from vlmrm.sac.replay_state import load_replay, save_replay

#: Bumped when the layout of ``state.pt`` changes.
FORMAT = 1
STATE = "state.pt"
REPLAY = "replay"
MANIFEST = "manifest.json"


def data_dir_name(stem: str, rank: int) -> str:
    """``<stem>.data-r<rank>``, e.g. ``step-4000.data-r0``."""
    return f"{stem}.data-r{rank}"


def save_data_state(data: DataPipeline, path: Path, extra: dict[str, Any]) -> None:
    """Write this rank's data-side state to the folder ``path`` (atomically); ``extra``
    holds the module's own plain values (RNG states it owns, schedules)."""
    data.pause()  # a batch being collected is finished first, and saved as pending below
    state = {"format": FORMAT, "data": pipeline_state(data), "rng": global_rng_state(),
             "extra": extra}
    with atomic_dir(path, durable=True) as tmp:
        torch.save(state, tmp / STATE)
        save_replay(data.replay_buffer, tmp / REPLAY)
        write_manifest(tmp)


def write_manifest(folder: Path) -> None:
    """List every file under ``folder`` with its size in ``manifest.json`` (written last)."""
    files = {f.relative_to(folder).as_posix(): f.stat().st_size
             for f in sorted(folder.rglob("*")) if f.is_file() and f.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": files}))


def data_state_problem(path: Path) -> str | None:
    """Why the data-state folder ``path`` cannot be used (None: it is complete): missing,
    no manifest, or a listed file absent or of another size than when it was written."""
    if not path.is_dir():
        return f"{path} is missing"
    try:
        files = json.loads((path / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{path} has no readable {MANIFEST} (written last: the folder is incomplete)"
    for name, size in files.items():
        file = path / name
        if not file.is_file() or file.stat().st_size != size:
            return f"{file} is missing or truncated (the manifest lists {size} bytes)"
    return None


def load_data_state(data: DataPipeline, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore what :func:`save_data_state` wrote into a freshly built pipeline; returns
    its ``extra`` and the global random generators' state, which the caller restores with
    :func:`load_global_rng_state` right before the next iteration (building a dataloader
    iterator, for one, draws from torch's generator)."""
    problem = data_state_problem(path)
    if problem is not None:
        raise ValueError(f"the checkpoint's data state cannot be used: {problem}. Resume from "
                         "an older checkpoint (remove the newer ones), or start a new run.")
    state = torch.load(path / STATE, weights_only=True)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path / STATE} has format {state.get('format')!r}; this vlmrm "
                         f"reads format {FORMAT}")
    load_pipeline_state(data, state["data"])
    load_replay(data.replay_buffer, path / REPLAY)
    return state["extra"], state["rng"]


# -- the pipeline ----------------------------------------------------------------------
def pipeline_state(data: DataPipeline) -> dict[str, Any]:
    model = data.scorer.model
    out: dict[str, Any] = {
        "steps_scored": data.steps_scored,
        "episodes": data.episodes.state_dict(),
        "formula": model.state_dict() if model is not None else None,
    }
    history = data.scorer.state_dict()
    if history:  # a reward model of more than one frame per reward
        out["frame_history"] = history
    if isinstance(data.batches, Collection):
        out["collection"] = collection_state(data.batches, data.exact_envs)
    if data.eval_env is not None:  # its episodes' reset noise continues too
        out["eval_env"] = env_state(data.eval_env, data.exact_envs)
    return out


def load_pipeline_state(data: DataPipeline, state: dict[str, Any]) -> None:
    data.steps_scored = state["steps_scored"]
    if isinstance(data.batches, Collection):
        restart = _restart_seed(data, SeedPurpose.TRAIN, state["steps_scored"])
        data.scorer.load_state_dict(state.get("frame_history"))
        if load_collection_state(data.batches, state["collection"], restart):
            state = _restarted(data, state)
            data.scorer.history.reset()  # every env starts an episode
    data.episodes.load_state_dict(state["episodes"])
    if data.scorer.model is not None and state["formula"] is not None:
        data.scorer.model.load_state_dict(state["formula"])
    if data.eval_env is not None:
        load_env_state(data.eval_env, state["eval_env"],
                       _restart_seed(data, SeedPurpose.EVAL, state["steps_scored"]))


def _restart_seed(data: DataPipeline, purpose: SeedPurpose, steps: int) -> int:
    return restart_seed(env_seed(data.seed, purpose, data.rank), steps)


def _restarted(data: DataPipeline, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with no episode in progress (their running returns would otherwise be
    added to the restarted episodes'), and without the steps of a dropped batch."""
    pending = state["collection"]["pending"]
    if pending is not None and "partial" not in pending:  # a partial batch was not scored
        data.steps_scored -= math.prod(pending["shape"])
    return {**state, "episodes": {k: torch.zeros_like(v) for k, v in state["episodes"].items()}}


def collection_state(collection: Collection, exact: bool = True) -> dict[str, Any]:
    """Batches started, the step loop's state (:meth:`StepLoop.state`: the exploration
    sampler, the next step's input, the envs), and a batch collected and scored ahead but not
    handed out yet (a run stopped while one was in flight; pixels are dropped by then, so it
    is small), or a batch cut short by a stop (:class:`~vlmrm.collect.loop.Partial`: its steps
    with their frames, and the embeddings of the passes already encoded)."""
    pending = collection.pending
    if isinstance(pending, Partial):
        saved = {"partial": {
            "random": pending.random, "encode_s": pending.encode_s,
            "batch": None if pending.batch is None else pending.batch.to_dict(),
            "shape": None if pending.batch is None else list(pending.batch.batch_size),
            "embeddings": pending.embeddings}}
    elif pending is not None and pending.problem is not None:
        raise pending.problem  # never saved: the run stops on it
    else:
        saved = None if pending is None else {
            "batch": pending.batch.to_dict(), "shape": list(pending.batch.batch_size)}
    held = collection.held
    return {"started": collection.started, **collection.loop.state(exact), "pending": saved,
            "held": None if held is None else {
                "batch": held.batch.to_dict(), "shape": list(held.batch.batch_size)}}


def load_collection_state(collection: Collection, state: dict[str, Any],
                          restart: int | None = None) -> bool:
    """Restore :func:`collection_state`; True when the envs restarted (reseeded with
    ``restart``). A batch collected ahead is then dropped and collected again from the
    restarted envs: it continued the episodes that no longer go on."""
    collection.started = state["started"]
    collection.loop.load_state(state, restart)
    pending = state["pending"]
    if state["env"]["envs"] is None:
        # The batch in progress (collected ahead or cut short by a stop) continued episodes
        # that no longer go on: collect it again. A held batch is complete: keep it.
        collection.started -= pending is not None
        pending = None
    if pending is not None and "partial" in pending:
        part = pending["partial"]
        batch = (None if part["batch"] is None
                 else TensorDict(part["batch"], batch_size=part["shape"]))
        collection.pending = Partial(batch, part["random"], part["embeddings"], part["encode_s"])
    elif pending is not None:
        collection.pending = ScoredBatch(TensorDict(pending["batch"],
                                                    batch_size=pending["shape"]), 0.0, 0.0)
    held = state.get("held")
    if held is not None:
        collection.held = ScoredBatch(TensorDict(held["batch"], batch_size=held["shape"]),
                                      0.0, 0.0)
    return state["env"]["envs"] is None


# -- global random generators ------------------------------------------------------------
def global_rng_state() -> dict[str, Any]:
    """torch's CPU (and CUDA) generators, numpy's and Python's global ones, as plain values."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos),
                  int(np_has_gauss), float(np_gauss)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def seed_global_rng(seed: int) -> None:
    """Seed torch's (CPU and CUDA), numpy's and Python's global generators with ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def load_global_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
