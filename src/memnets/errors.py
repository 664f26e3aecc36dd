"""The errors memnets raises on purpose, and how the command line maps them.

Every error the project raises for bad input or a broken file derives from
:class:`MemnetsError`, so that a caller (and the fuzz tests) can tell "memnets
refused this, and said why" from a bug.  The command line prints one line and
exits with 2 for :class:`ConfigError`, 1 for the others.

Messages name what was expected and what came, and the file (and line) where
there is one; :func:`shorten` cuts long offending content.

This module imports only the standard library.
"""

from __future__ import annotations


class MemnetsError(Exception):
    """Base class of the errors memnets raises for bad input or a broken file."""


class ConfigError(MemnetsError, ValueError):
    """A recipe, an override or an argument is invalid (exit status 2)."""


class DataError(MemnetsError, RuntimeError):
    """A dataset file or folder is missing or malformed (exit status 1)."""


class TrainingError(MemnetsError, RuntimeError):
    """Training cannot go on (a NaN loss, a broken or busy run directory); exit status 1."""


class CheckpointError(TrainingError):
    """A file of a run directory (checkpoint, pointer, task or config) cannot be read."""


def shorten(value, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how long it was."""
    text = value if isinstance(value, str) else repr(value)
    if isinstance(value, (str, bytes)):
        text = repr(value)
    if len(text) <= limit:
        return text
    n = len(value) if isinstance(value, (str, bytes)) else len(text)
    return f"{text[:limit]}... ({n} characters)"
