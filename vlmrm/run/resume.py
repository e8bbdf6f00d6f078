"""``vlmrm fit --resume RUN_DIR|last``: which run, which checkpoint, and which config.

A run resumes from its newest complete checkpoint whose data-side folders
(:mod:`vlmrm.run.runstate`) are all there. Its config is the one saved in that checkpoint;
a config file or overrides given on resume may change only :data:`SAFE_TO_CHANGE`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from vlmrm.config import Config, load_config
from vlmrm.errors import ConfigError
from vlmrm.precision import AUTO
from vlmrm.run.checkpoints import LAST, step_checkpoints
from vlmrm.run.runstate import data_dir_name, data_state_problem

#: Keys a resumed run may change: they decide how long it runs and what it writes, never
#: what it computes. Everything else (the model, prompts, envs, seeds, the number of ranks,
#: whose envs and replay buffers are saved per rank) must match the checkpoint.
SAFE_TO_CHANGE = frozenset({
    "agent.total_env_steps", "agent.eval_every", "agent.eval_episodes", "agent.num_threads",
    # Both collectors collect the same batches from the same checkpoint state.
    "agent.collector",
    "logging.checkpoint_every", "logging.video_every", "logging.keep_checkpoints",
    "logging.output_dir", "logging.run_name", "trainer.enable_progress_bar",
    # Decides only whether the monitor gives a verdict.
    "logging.monitor_gt_measures_task",
    "logging.stop_timeout_s",
})


@dataclass
class Resume:
    """Where a resumed run continues: its directory, checkpoint and (checked) config."""

    run_dir: Path
    checkpoint: Path
    cfg: Config
    #: Epochs Lightning had completed (1 when the run had reached its end).
    epochs_done: int


def find_run(spec: str, config_path: str | None, output_dir: str,
             cfg: Config | None = None) -> Path:
    """``spec`` is a run directory, or ``last``: the newest run of ``config_path`` (by the
    time its newest checkpoint was written) under ``output_dir``. A run of the config is one
    named ``<config stem>-*`` (automatic and launcher-derived names), ``cfg``'s
    ``logging.run_name``, or any run whose saved ``config.yaml`` computes what ``cfg`` does
    (a run named by ``logging.run_name`` earlier)."""
    if spec != "last":
        run_dir = Path(spec).expanduser()
        if not (run_dir / "checkpoints").is_dir():
            raise ConfigError(f"--resume {spec!r}: no checkpoints folder in that directory. "
                              "Give a run directory (e.g. runs/quickstart-20260101-120000) or "
                              "--resume last with --config.")
        return run_dir
    if config_path is None:
        raise ConfigError("--resume last needs --config: it resumes the newest run of that "
                          "config. Add --config FILE, or give the run directory instead.")
    stem = Path(config_path).stem
    parent = Path(output_dir).expanduser()
    found = [(d, ckpt) for d in (parent.iterdir() if parent.is_dir() else ())
             if _is_run_of(d, stem, cfg) and (ckpt := resumable_checkpoint(d / "checkpoints"))]
    if not found:
        raise ConfigError(f"--resume last: no run of {stem!r} with a checkpoint to resume under "
                          f"{output_dir!r}. Start one with vlmrm fit --config {config_path}.")
    return max(found, key=lambda found: found[1].stat().st_mtime_ns)[0]


def _is_run_of(run_dir: Path, stem: str, cfg: Config | None) -> bool:
    if not (run_dir / "checkpoints").is_dir():
        return False
    if run_dir.name.startswith(f"{stem}-"):
        return True
    if cfg is None:
        return False
    if run_dir.name == cfg.logging.run_name:
        return True
    try:  # named freely: compare what it computes (keys a resume may change aside)
        saved = load_config(run_dir / "config.yaml")
        if cfg.reward.precision == AUTO:  # the saved config holds what auto chose
            cfg = replace(cfg, reward=replace(cfg.reward, precision=saved.reward.precision))
        check_changes(saved, cfg)
    except (ConfigError, OSError, ValueError):
        return False
    return True


def resumable_checkpoint(dirpath: Path) -> Path | None:
    """The most recently completed checkpoint whose data folders are all complete (their
    manifests check out: :func:`~vlmrm.run.runstate.data_state_problem`); an older one where
    the newest's data state was damaged."""
    candidates = step_checkpoints(dirpath) + ([dirpath / LAST] if (dirpath / LAST).is_file()
                                              else [])
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        meta = read_meta(path)
        stem, world = meta.get("data_state"), meta.get("world_size", 1)
        if stem and all(data_state_problem(dirpath / data_dir_name(stem, r)) is None
                        for r in range(world)):
            return path
    return None


def read_meta(checkpoint: Path) -> dict[str, Any]:
    """The ``vlmrm`` part of a checkpoint plus Lightning's epoch count ({} if unreadable)."""
    try:
        data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # a foreign or damaged file: not a checkpoint to resume from
        return {}
    meta = dict(data.get("vlmrm", {}))
    meta["epochs_done"] = int(data.get("epoch", 0)) + _epoch_finished(data)
    return meta


def _epoch_finished(data: dict[str, Any]) -> int:
    try:
        progress = data["loops"]["fit_loop"]["epoch_progress"]["current"]
        return int(progress["completed"] > data.get("epoch", 0))
    except (KeyError, TypeError):
        return 0


def plan_resume(spec: str, config_path: str | None, overrides: list[str]) -> Resume:
    """The run, checkpoint and config to resume, or a :class:`ConfigError` saying why not."""
    given = load_config(config_path, overrides) if config_path else None
    output_dir = given.logging.output_dir if given is not None else "runs"
    run_dir = find_run(spec, config_path, output_dir, given)
    checkpoint = resumable_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        raise ConfigError(f"--resume {spec!r}: {run_dir} has no complete checkpoint with its "
                          "replay buffer and env state (written by vlmrm fit since resume "
                          "existed). Start a new run instead.")
    meta = read_meta(checkpoint)
    saved = load_config(None, base=meta["config"])
    cfg = load_config(config_path, overrides, base=meta["config"])
    if cfg.reward.precision == AUTO:  # what auto chose when the run started stays
        cfg.reward.precision = saved.reward.precision
    check_changes(saved, cfg)
    cfg.logging.output_dir, cfg.logging.run_name = saved.logging.output_dir, run_dir.name
    if meta["env_steps"] >= cfg.agent.total_env_steps:
        raise ConfigError(
            f"--resume: the run already has {meta['env_steps']} env steps, "
            f"agent.total_env_steps={cfg.agent.total_env_steps}. To train longer, give a larger "
            "agent.total_env_steps=N.")
    return Resume(run_dir, checkpoint, cfg, meta["epochs_done"])


def check_changes(saved: Config, new: Config) -> None:
    """Refuse a config that differs from the checkpoint's outside :data:`SAFE_TO_CHANGE`."""
    before, after = _flat(saved), _flat(new)
    changed = sorted(k for k in before.keys() | after.keys()
                     if before.get(k) != after.get(k) and k not in SAFE_TO_CHANGE)
    if changed:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in changed[:4])
        raise ConfigError(
            f"--resume: the config differs from the checkpoint's in {shown}"
            f"{' ...' if len(changed) > 4 else ''}. A resumed run must compute what the "
            f"original would have; only {', '.join(sorted(SAFE_TO_CHANGE))} may change. Drop "
            "those overrides, or start a new run.")


def _flat(cfg: Config) -> dict[str, Any]:
    """``{"seed": ..., "agent.total_env_steps": ..., ...}``: sections one level deep (values
    such as ``env.kwargs`` compare whole)."""
    out: dict[str, Any] = {}
    for key, value in OmegaConf.to_container(OmegaConf.structured(cfg)).items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out
