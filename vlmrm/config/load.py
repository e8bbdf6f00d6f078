"""Loading: defaults from the schema, then a YAML file, then ``key=value`` overrides.

Whatever the input, the result is a valid :class:`Config` or one :class:`ConfigError`
(one paragraph naming the key and value): YAML goes through OmegaConf's safe loader (no
tags that build objects), and of OmegaConf's interpolations only ``${other.key}`` and
``${oc.env:VAR}`` / ``${oc.env:VAR,default}`` are allowed. Resolvers are functions: any
other one (a library may register ``eval``-like resolvers) could run code chosen by a
config, so it is refused by name before anything is resolved.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vlmrm.config.checks import validate
from vlmrm.config.reward_checks import reward_transform
from vlmrm.config.schema import Config
from vlmrm.errors import ConfigError, one_paragraph

#: A config file is a few KB; anything this large is not one.
MAX_CONFIG_BYTES = 1 << 20
ALLOWED_RESOLVERS = ("oc.env",)
#: ``${name:`` opens a resolver call (``\${`` is an escaped, literal ``${``).
_RESOLVER = re.compile(r"(?<!\\)\$\{\s*([^${}:\s]+)\s*:")


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (),
                base: dict[str, Any] | None = None) -> Config:
    """Merge ``base`` (e.g. the config saved in a checkpoint), ``path`` (YAML) and
    ``key=value`` overrides onto the defaults, then validate. Shorthands are resolved:
    ``reward.transform`` holds the reward chain, ``reward.alpha`` folded in."""
    layers: list[tuple[str, DictConfig]] = []
    if base is not None:
        layers.append(("the checkpoint's saved config", _create(base)))
    if path is not None:
        layers.append((f"config file {str(path)!r}", _read_yaml(Path(path))))
    layers += [(f"override {item!r}", _parse_override(item)) for item in overrides]
    merged = OmegaConf.structured(Config)
    for source, layer in layers:  # one at a time, so that an error can name its source
        _check_resolvers(source, layer)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            raise ConfigError(_describe(err, source)) from None
    cfg = _to_object(merged)
    validate(cfg)
    cfg.reward.transform = reward_transform(cfg.reward)
    return cfg


def _create(data: dict[str, Any]) -> DictConfig:
    try:
        return OmegaConf.create(data)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err)) from None


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist. Pass an existing YAML file, "
                          "for example --config configs/cartpole.yaml.")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"Config file {str(path)!r} is larger than {MAX_CONFIG_BYTES} bytes; a "
                          "vlmrm config is a few KB of YAML. Pass the right file.")
    try:
        loaded = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError, UnicodeDecodeError, OmegaConf errors, ...
        raise ConfigError(f"Config file {str(path)!r} is not valid YAML: "
                          f"{one_paragraph(str(err))}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"Config file {str(path)!r} must hold a mapping of config groups "
                          "(env:, reward:, agent:, ...).")
    return loaded


def _parse_override(item: str) -> DictConfig:
    key, eq, _ = item.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"Override {item!r} is not of the form key=value. "
                          "Write for example `agent.total_env_steps=2000`.")
    try:
        return OmegaConf.from_dotlist([item])
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err)) from None
    except Exception as err:  # the value is parsed as YAML: yaml errors, type errors
        raise ConfigError(f"Override {item!r} cannot be parsed: {one_paragraph(str(err))}. "
                          "Quote values with special characters, e.g. "
                          "reward.goal_prompts='[\"a robot, kneeling\"]'.") from None


def _check_resolvers(source: str, layer: DictConfig) -> None:
    for key, text in _strings(OmegaConf.to_container(layer, resolve=False)):
        for name in _RESOLVER.findall(text):
            if name not in ALLOWED_RESOLVERS:
                raise ConfigError(
                    f"{one_paragraph(key)}={text!r} (in {source}) uses the resolver "
                    f"{name!r}. Config values "
                    "may only use ${other.key} and ${oc.env:VAR} interpolations: other "
                    "resolvers are functions, and no config value may run code.")


def _strings(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a nested container, with its dotted key."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{prefix}[{i}]")
    elif isinstance(node, str):
        yield prefix, node


def _to_object(merged: DictConfig) -> Config:
    try:  # interpolations resolve here
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ConfigError(f"Config key {missing[0]!r} has no value ('???'). Set it in the "
                              "YAML file or with an override.")
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err)) from None


def _describe(err: OmegaConfBaseException, source: str = "") -> str:
    key = str(getattr(err, "full_key", None) or "")
    msg = one_paragraph((getattr(err, "msg", None) or str(err)).splitlines()[0]).rstrip(".")
    where = f" (in {source})" if source else ""
    if "not in struct" in str(err) or ("Key '" in msg and "not in" in msg):
        return (f"Unknown config key {key!r}{where}.{did_you_mean(key)} Check its spelling "
                "against `vlmrm fit --help` (the schema is vlmrm/config/schema.py).")
    if not key:
        return f"Bad config value{where}: {msg}. Fix it in the YAML file or override."
    return (f"Bad value for config key {key!r}{where}: {msg}. Fix it in the YAML file or "
            "override.")


def schema_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, groups included (``agent``, ``agent.batch_size``)."""
    keys = []
    for f in fields(cls):
        keys.append(f"{prefix}{f.name}")
        default = getattr(cls(), f.name)
        if is_dataclass(default):
            keys += schema_keys(type(default), f"{prefix}{f.name}.")
    return keys


def did_you_mean(key: str) -> str:
    """`` Did you mean 'x'?`` for the schema keys closest to an unknown ``key`` (the same
    name in another group counts as close), or ``""``."""
    keys = schema_keys()
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == leaf and k != key]
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.75)
    options = list(dict.fromkeys(same_leaf + close))[:3]
    return f" Did you mean {' or '.join(repr(k) for k in options)}?" if options else ""


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
