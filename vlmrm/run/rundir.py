"""Run directories: one per run, named by the config, ``logging.run_name`` or an external
launcher's job id, created so that two runs never share one, and shared with DDP ranks."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from vlmrm.config.schema import Config
from vlmrm.errors import ConfigError

#: Run directory shared with DDP worker processes, which re-run the command line.
RUN_DIR_ENV = "VLMRM_RUN_DIR"


def make_run_dir(cfg: Config, config_path: str | os.PathLike | None) -> Path:
    """Create this run's directory, ``logging.output_dir/<run name>``, and return it.

    Creation is one ``mkdir`` that fails when the name exists, so two runs never share a
    directory, even when started in the same second: an automatic name
    (``<config name>-<timestamp>``) takes the first free suffix (``-2``, ``-3``, ...), and an
    explicit ``logging.run_name`` that exists is refused. DDP worker ranks started by
    Lightning re-run the command and reuse the launcher's directory (``VLMRM_RUN_DIR``).
    Under an external launcher (torchrun, SLURM) every rank derives the same name from the
    launcher's job id (:func:`launcher_run_name`) and only rank 0 creates the directory.
    """
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    parent = _output_dir(cfg.logging.output_dir)
    stem = Path(config_path).stem if config_path else "run"
    launched = cfg.logging.run_name is None and _launcher_world() > 1
    if launched:
        name = launcher_run_name(stem)
    else:
        name = cfg.logging.run_name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if _launcher_rank() > 0:
        return parent / name
    if launched:
        run_dir = _create_launched(parent, name)
    else:
        run_dir = (_create_named(parent, name) if cfg.logging.run_name
                   else _create_unique(parent, name))
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def use_run_dir(run_dir: Path) -> Path:
    """An existing run's directory, for a resumed run (shared with DDP worker processes)."""
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def _launcher_rank() -> int:
    """The global rank an external launcher gave this process (0 without one)."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdecimal():
            return int(os.environ[var])
    return 0


def _launcher_world() -> int:
    """The processes an external launcher started for this run (1 without one)."""
    for var in ("WORLD_SIZE", "SLURM_NTASKS"):
        if os.environ.get(var, "").isdecimal():
            return int(os.environ[var])
    return 1


def launcher_run_name(stem: str) -> str:
    """The run name every rank of an externally launched run derives alike, without talking
    to the others: ``<stem>-slurm<job id>[.<step id>]`` under SLURM, ``<stem>-torchrun-<run
    id>`` under torchrun (its ``--rdzv-id``; ``--standalone`` makes a fresh one per launch).
    Refused where the launcher gives nothing that names this run alone."""
    env = os.environ
    if env.get("TORCHELASTIC_RUN_ID", "none") not in ("", "none"):
        return f"{stem}-torchrun-{_name_part(env['TORCHELASTIC_RUN_ID'])}"
    if env.get("SLURM_JOB_ID") and "SLURM_PROCID" in env:
        step = env.get("SLURM_STEP_ID")
        return f"{stem}-slurm{_name_part(env['SLURM_JOB_ID'])}" + (
            f".{_name_part(step)}" if step else "")
    raise ConfigError(
        f"This process is rank {_launcher_rank()} of {_launcher_world()} started by an external "
        "launcher that gives no id naming this run (torchrun without --standalone or "
        "--rdzv-id, or a launcher other than torchrun or SLURM), so the ranks cannot agree on a "
        "run directory without talking to each other. Set logging.run_name=NAME (the same on "
        "every rank), or start torchrun with --standalone or --rdzv-id=ID.")


def _name_part(value: str) -> str:
    """``value`` as part of a directory name (launcher ids are normally safe already)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in value)[:80]


def _create(run_dir: Path, taken: str) -> Path:
    """``run_dir``, made by one ``mkdir`` (never another run's); ``taken`` explains a name
    that exists and the way out."""
    try:
        run_dir.mkdir()
    except FileExistsError:
        raise ConfigError(taken) from None
    return run_dir


def _create_launched(parent: Path, name: str) -> Path:
    run_dir = parent / name
    return _create(run_dir, (
        f"{run_dir} already exists: the run directory's name comes from the launcher's job "
        "id, and a job with this id already made a run. To continue that run, use "
        f"vlmrm fit --resume {run_dir}; to start another one, set logging.run_name=NAME "
        "(the same on every rank) or launch with a new id."))


def _output_dir(value: str) -> Path:
    parent = Path(value).expanduser().resolve()
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"logging.output_dir={value!r} cannot be used as the parent of run "
                          f"directories ({err.strerror or err}). Give a writable directory, "
                          "e.g. logging.output_dir=runs.") from None
    return parent


def _create_named(parent: Path, name: str) -> Path:
    run_dir = parent / name
    return _create(run_dir, (
        f"logging.run_name={name!r}: {run_dir} already exists, and a run never writes "
        "into another run's directory. Choose another name, or leave logging.run_name "
        "unset for an automatic '<config name>-<timestamp>' name."))


def _create_unique(parent: Path, name: str, attempts: int = 1000) -> Path:
    for i in range(1, attempts + 1):
        run_dir = parent / (name if i == 1 else f"{name}-{i}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise ConfigError(f"logging.output_dir={str(parent)!r} already holds {attempts} runs named "
                      f"{name!r}(-N); choose another logging.output_dir or logging.run_name.")


def discard_run_dir(run_dir: Path) -> None:
    """Remove a run directory this process just created, if nothing was written to it yet
    (a config error found after creation must leave no run directory behind)."""
    if os.environ.get(RUN_DIR_ENV) == str(run_dir):
        os.environ.pop(RUN_DIR_ENV)
    with contextlib.suppress(OSError):
        run_dir.rmdir()  # only succeeds when empty
