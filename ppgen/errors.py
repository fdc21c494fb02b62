"""Exceptions ppgen raises. Every message says what was wrong, with the value, and what to do."""

from __future__ import annotations

__all__ = [
    "PPGenError",
    "ConfigError",
    "DataError",
    "IncompatibleInference",
    "CheckpointError",
    "Diverged",
]


class PPGenError(Exception):
    """Base class of every error ppgen raises on purpose."""


class ConfigError(PPGenError, ValueError):
    """A hyperparameter, option or name is invalid (unknown name, impossible value)."""


class DataError(PPGenError, ValueError):
    """Data is malformed: wrong shape, NaN/inf, outside a likelihood's support, unreadable file."""


class IncompatibleInference(PPGenError, TypeError):
    """The chosen inference algorithm cannot serve the chosen model."""


class CheckpointError(PPGenError, ValueError):
    """A run folder or checkpoint is truncated, corrupt, or belongs to another model."""


class Diverged(PPGenError, RuntimeError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""
