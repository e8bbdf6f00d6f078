"""Loading: defaults from the schema, then a YAML file, then ``key=value`` overrides."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vlmrm.config.checks import validate
from vlmrm.config.schema import Config
from vlmrm.errors import ConfigError


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (),
                base: dict[str, Any] | None = None) -> Config:
    """Merge ``base`` (e.g. the config saved in a checkpoint), ``path`` (YAML) and
    ``key=value`` overrides onto the defaults, then validate."""
    schema = OmegaConf.structured(Config)
    layers: list[DictConfig] = []
    if base is not None:
        layers.append(OmegaConf.create(base))
    if path is not None:
        layers.append(_read_yaml(Path(path)))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"Override {item!r} is not of the form key=value. "
                "Write for example `agent.total_env_steps=2000`."
            )
    try:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(schema, *layers)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err)) from None
    cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate(cfg)
    return cfg


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist. Pass an existing YAML file, "
                          "for example --config configs/cartpole.yaml.")
    try:
        loaded = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends
        raise ConfigError(f"Config file {str(path)!r} is not valid YAML: {err}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"Config file {str(path)!r} must hold a mapping of config groups.")
    return loaded


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or "?"
    msg = (getattr(err, "msg", None) or str(err)).splitlines()[0].rstrip(".")
    if "not in struct" in str(err) or ("Key '" in msg and "not in" in msg):
        return (f"Unknown config key {key!r}. Check its spelling against `vlmrm fit --help` "
                "(the schema is vlmrm/config/schema.py).")
    return f"Bad value for config key {key!r}: {msg}. Fix it in the YAML file or override."


def describe_schema(cls: type = Config, prefix: str = "") -> str:
    """Every config key with its default and its ``help`` text (for ``--help``)."""
    lines = []
    defaults = cls()
    for f in fields(cls):
        value = getattr(defaults, f.name)
        if is_dataclass(value):
            lines.append(describe_schema(type(value), f"{prefix}{f.name}."))
            continue
        lines.append(f"  {prefix}{f.name} = {value!r}  -- {f.metadata['help']}")
    return "\n".join(lines)


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
