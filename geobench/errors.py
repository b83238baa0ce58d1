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

class Interrupted(GeobenchError):
    """Ctrl-C, reported with what was kept and the command that continues."""

    exit_code = 130


# What is true after Ctrl-C in commands that do not raise Interrupted themselves.
_INTERRUPTED = {
    "polar_cmd": "interrupted; the images written so far are complete and kept; re-run the "
                 "same command to continue (up-to-date outputs are skipped)",
    "prepare_cmd": "interrupted before the index (index.csv, positives.csv, manifest.json) was "
                   "written; re-run the same command",
    "eval_cmd": "interrupted before results.h5 and metrics.csv were written; re-run the same "
                "command",
    "mine_cmd": "interrupted; positives.csv was not changed; re-run the same command",
    "demo_cmd": "interrupted; re-run the same command (a finished synthetic world is reused, "
                "training starts again)",
}
_DEFAULT_INTERRUPTED = ("interrupted; no file was left half-written (files appear whole or "
                        "not at all); re-run the same command")


def interrupted_message(command: str) -> str:
    return _INTERRUPTED.get(command, _DEFAULT_INTERRUPTED)


def user_message(exc: BaseException) -> str:
    """The message to show for `exc`, without torch's DataLoader wrapping.

    An exception raised in a DataLoader worker is re-raised in the parent with the whole
    worker traceback as its message ("Caught DataError in DataLoader worker process 0.
    Original Traceback ..."); the user needs only the last line, the original message.
    """
    text = str(exc)
    if not (text.startswith("Caught ") and "Original Traceback" in text):
        return text
    name = type(exc).__name__
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        head, sep, rest = lines[i].partition(": ")
        if sep and head.rsplit(".", 1)[-1] == name and not lines[i].startswith(" "):
            return " ".join([rest, *lines[i + 1:]])
    return text
