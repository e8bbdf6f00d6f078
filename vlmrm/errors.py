"""Errors users can fix: the CLI prints their message and exits with code 2."""


class VLMRMError(Exception):
    """Base class of user-facing errors."""


class ConfigError(VLMRMError):
    """A configuration value is wrong; the message names it and the fix."""


class ModelUnavailableError(VLMRMError):
    """A reward model cannot be loaded (not cached and not downloadable, unknown name, ...)."""
