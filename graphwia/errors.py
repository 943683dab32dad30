"""Exceptions graphwia raises for input it cannot analyse.

Every message is one line that names the culprit (file, column, op, worker or
step), so the CLI can print it as is, without a traceback.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "GraphwiaError",
    "MetaError",
    "OutputError",
    "ScheduleError",
    "TraceError",
    "UsageError",
    "first_line",
]


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


class ArgumentError(UsageError):
    """A bad value of one argument of a library call.

    ``argument`` is the keyword of the Python API that took it (``steps``,
    ``workers``, ``scheduler``, ``path``…), ``value`` the value given (None: the
    argument as a whole) and ``problem`` what is wrong with it; ``source`` names
    the file it was checked against, if any. The message reads
    ``[source: ]steps '20-': problem``; the command line words the same error
    with its own option instead of the keyword (``--steps``), through
    :meth:`worded`.
    """

    def __init__(self, argument: str, value: object, problem: str, *, source: str | None = None):
        self.argument, self.value, self.problem, self.source = argument, value, problem, source
        super().__init__(self.worded(argument))

    def worded(self, name: str) -> str:
        """The message with the argument called ``name`` (e.g. the CLI option that set it)."""
        where = f"{self.source}: " if self.source else ""
        shown = "" if self.value is None else f" {self.value}"
        return f"{where}{name}{shown}: {self.problem}"


class OutputError(GraphwiaError):
    """An output path cannot be written."""


def first_line(exc: BaseException, *, limit: int | None = None) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__
