"""Structured configuration (OmegaConf): the dataclasses in :mod:`vlmrm.config.schema` are
the schema and hold every default; YAML files and ``key=value`` overrides only change
fields that exist, and anything else is a :class:`~vlmrm.errors.ConfigError`."""

from vlmrm.config.load import describe_schema, load_config, to_yaml
from vlmrm.config.schema import (
    AgentConfig,
    Config,
    EnvConfig,
    LoggingConfig,
    RewardConfig,
    TrainerConfig,
)

__all__ = ["AgentConfig", "Config", "EnvConfig", "LoggingConfig", "RewardConfig",
           "TrainerConfig", "describe_schema", "load_config", "to_yaml"]
