"""Errors that carry one user-facing line.

The CLI prints ``str(error)`` and exits non-zero; anything else is a bug and keeps its traceback.
"""


class SynergraphError(Exception):
    """Base class for errors caused by user input (files, flags, configuration)."""


class DataError(SynergraphError):
    """A dataset file is missing, malformed or inconsistent."""


class ConfigError(SynergraphError):
    """A configuration value, flag or setting is invalid."""


class RunError(SynergraphError):
    """A run directory is missing, incomplete or does not match its data."""


def require(condition: bool, message: str) -> None:
    """Raise a :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)
