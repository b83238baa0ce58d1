"""Exceptions for user-facing failures.

Every error a user can cause (missing file, bad option, corrupt image, wrong layout)
is raised as a subclass of GeobenchError whose message names what is wrong and how to
fix it. The CLI prints that message on one line to stderr and exits non-zero; nothing
else should be caught there, so programming errors still show a traceback.
"""
from __future__ import annotations


class GeobenchError(Exception):
    """Base class: a user-facing error with a one-line, actionable message."""

    exit_code = 2


class UsageError(GeobenchError):
    """A bad option or argument value."""


class DataError(GeobenchError):
    """A file or dataset that is missing, malformed or inconsistent."""


class SchemaError(DataError):
    """A geobench file (index, positives, manifest, features, results) breaks its contract."""


class UnknownNameError(UsageError):
    """A registry lookup for a name that is not registered."""


class TrainingError(GeobenchError):
    """A training run that cannot continue (e.g. a NaN loss)."""


class GeobenchWarning(UserWarning):
    """A user-facing warning; the CLI prints it as one `warning: ...` line on stderr."""


def one_line(message: str) -> str:
    """Collapse a message onto one line, as the CLI prints it."""
    return " ".join(str(message).split())


class DiskFullError(DataError):
    """A write that ran out of space (ENOSPC/EDQUOT); the message names the file and bytes."""
