"""The primitives every config check is written with: a refusal is a ConfigError whose
message names the key, the value and the fix."""

from __future__ import annotations

from pathlib import Path

from vlmrm.errors import ConfigError


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def one_of(key: str, value: object, choices: tuple) -> None:
    require(value in choices, f"{key}={value!r} is not one of {list(choices)}.")


def as_path(key: str, value: str, example: str) -> Path:
    """A path-valued setting as a Path; refused when no file system would accept it."""
    require(bool(value.strip()) and "\0" not in value,
            f"{key}={value!r} is not a usable path. Give one like {key}={example}.")
    return Path(value).expanduser()
