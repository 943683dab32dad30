"""Exceptions graphwia raises for input it cannot analyse.

Every message is one line that names the culprit (file, column, op, worker or
step), so the CLI can print it as is, without a traceback.
"""

from __future__ import annotations


class GraphwiaError(Exception):
    """Base class of every error graphwia reports to a user."""

    exit_code = 1


class TraceError(GraphwiaError):
    """The trace file is missing, unreadable, or its content is invalid."""


class MetaError(GraphwiaError):
    """The metadata YAML is missing, unreadable, or inconsistent."""


class ScheduleError(GraphwiaError):
    """The trace does not fit the dependency model (unpairable p2p, cycle…)."""


class UsageError(GraphwiaError):
    """An argument selects nothing or names something that does not exist."""

    exit_code = 2


class OutputError(GraphwiaError):
    """An output path cannot be written."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__
