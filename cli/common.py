"""What every command shares: error reporting, signals, step lists, time units, progress, console."""

from __future__ import annotations

import functools
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, NoReturn

import typer

__all__ = [
    "OPTION_OF_ARGUMENT",
    "State",
    "StepSelection",
    "TRACE_HELP",
    "Terminated",
    "TimeUnitChoice",
    "TypicalFromChoice",
    "cli_message",
    "fail",
    "handle_termination",
    "print_error",
    "progress",
    "reports_errors",
    "step_spec",
    "time_unit_option",
    "tune_malloc",
    "typical_from_option",
]


def tune_malloc() -> None:
    """Keep freed memory in this process instead of returning it to the OS.

    Evaluation allocates and frees large temporaries level after level; with
    glibc's defaults each one is a fresh mmap whose pages fault in again
    (~15% of a large analysis). The CLI owns its process, so it may tune this;
    the library never does. A no-op where glibc's mallopt is not available.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return
    if mallopt is not None:
        m_trim_threshold, m_mmap_threshold = -1, -3
        mallopt(m_trim_threshold, 1 << 31)
        mallopt(m_mmap_threshold, 1 << 30)


class State:
    """Global flags set by the app callback."""

    debug = False


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error to stderr and exit with ``code``."""
    print_error(message)
    raise typer.Exit(code)


def print_error(message: str) -> None:
    """``graphwia: error: message`` on stderr, on one line."""
    message = " ".join(str(message).splitlines())  # line breaks quoted from a bad file stay on the line
    typer.echo(f"graphwia: error: {message}", err=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the command ends as it does on Ctrl-C (outputs as they were, temporaries removed)."""


def handle_termination() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread, as SIGINT raises KeyboardInterrupt."""

    def terminated(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, terminated)


#: Exit codes of a command ended by a signal (128 + the signal's number, as shells report it).
EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_BROKEN_PIPE = 130, 143, 141


def reports_errors(command: Callable) -> Callable:
    """Turn graphwia errors (and unexpected ones) into one line and an exit code.

    Also: a closed stdout (``| head``) ends the command quietly, as Unix tools
    do; SIGTERM and Ctrl-C end it with one line; a Python warning raised by a
    library is shown as one ``graphwia: warning:`` line, not with source paths.
    With ``--debug`` tracebacks and warnings are shown as Python shows them.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from graphwia.errors import GraphwiaError, first_line

        try:
            with warnings.catch_warnings(record=not State.debug) as caught:  # the filters stay as they are
                try:
                    return command(*args, **kwargs)
                finally:
                    for line in dict.fromkeys(_warning_line(w) for w in caught or ()):
                        typer.echo(line, err=True)
                    sys.stdout.flush()  # a closed pipe shows here, not at exit
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BrokenPipeError:
            _quiet_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except GraphwiaError as exc:
            if State.debug:
                raise
            fail(cli_message(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            from graphwia.utils.io import discard_own_temporaries

            discard_own_temporaries()  # the interruption may have landed between creating a temporary and its cleanup
            terminated = isinstance(exc, Terminated)
            fail("terminated" if terminated else "interrupted", EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
        except MemoryError:
            if State.debug:
                raise
            fail("out of memory (this trace needs more memory than the machine could give)", 1)
        except Exception as exc:  # a bug or an unforeseen input: still one line, unless --debug
            if State.debug:
                raise
            fail(f"unexpected {type(exc).__name__}: {first_line(exc)} (run with --debug for the traceback)", 1)

    return wrapper


#: API keyword → the option that sets it, where the two are not named alike (``nccl`` → ``--nccl-names``).
OPTION_OF_ARGUMENT = {
    "path": "--out",
    "data_dir": "--data",
    "nccl": "--nccl-names",
    "layout": "--pp/--dp/--tp",
    "times": "--timelines",  # whatif: only --timelines keeps every op's times
}


def cli_message(exc: Exception) -> str:
    """A library error's message, with the option that fixes it where there is one."""
    from graphwia.errors import ArgumentError
    from graphwia.trace.optable import TimeUnitError

    if isinstance(exc, ArgumentError):
        return exc.worded(OPTION_OF_ARGUMENT.get(exc.argument, "--" + exc.argument.replace("_", "-")))

    if isinstance(exc, TimeUnitError):
        if exc.guess is None:
            return f"{exc}; start_ts and duration must be in one unit (pass --time-unit to convert both)"
        return f"{exc}: pass --time-unit {exc.guess} (or --time-unit s if they really are seconds)"
    return str(exc)


def _warning_line(caught: warnings.WarningMessage) -> str:
    from graphwia.errors import first_line

    message = caught.message
    if isinstance(message, str):  # recorded from a direct showwarning() call; warnings.warn gives the instance
        message = caught.category(message)
    return (
        f"graphwia: warning: {caught.category.__name__}: {first_line(message, limit=200)} "
        "(an internal warning; run with --debug for where)"
    )


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so flushing it at exit does not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def step_spec(ctx: typer.Context, steps: list[str] | None) -> list[str] | None:
    """Values of ``--steps`` plus the step specs that followed it (``--steps 12 20-23``)."""
    extra = list(ctx.args)
    if extra and not steps:
        raise typer.BadParameter(f"unexpected argument(s) {' '.join(extra)}")
    return (steps or []) + extra or None


#: Help of the TRACE argument of the commands that read a trace (graphwia.trace.files.open_trace).
TRACE_HELP = (
    "Trace file (.parquet, .csv or .csv.gz, with its metadata YAML) or a directory of per-rank "
    "PyTorch profiler traces (.json / .json.gz), imported in memory."
)


#: Values of ``--typical-from``: graphwia.model.weights.TypicalFrom (spelled out so ``--help`` loads no numpy).
TypicalFromChoice = Literal["selected", "all"]


def typical_from_option():
    """``--typical-from selected|all``, for the commands that take ``--steps`` (annotate it TypicalFromChoice)."""
    return typer.Option(
        "selected",
        "--typical-from",
        help="With --steps: take the typical op weights (the ideal) from the selected steps "
        "only, or from all steps of the trace.",
    )


#: Values of ``--time-unit``: graphwia.trace.optable.TIME_UNITS (spelled out so ``--help`` loads no numpy).
TimeUnitChoice = Literal["s", "ms", "us", "ns"]


def time_unit_option():
    """``--time-unit s|ms|us|ns``, for the commands that read traces (annotate it Optional[TimeUnitChoice])."""
    return typer.Option(
        None,
        "--time-unit",
        help="Unit of start_ts and duration (default: seconds; times that do not look like seconds are refused).",
    )


class StepSelection:
    """``--steps`` parsed before the trace is read (a typo fails fast), resolved once it is.

    ``--steps`` takes the step specs that follow it, up to the next option:
    ``--steps 12 20-23 TRACE`` is read as steps 12 and 20-23 of TRACE (the
    trace is the one word that is not a step number or range). The command's
    ``--time-unit`` (if it has one) applies when the trace is loaded.
    """

    def __init__(self, ctx: typer.Context, steps: list[str] | None):
        from graphwia.trace.steps import parse_step_spec

        spec, self.trace = _steps_and_trace(ctx, steps)
        self.spans = parse_step_spec(spec) if spec else None
        self.time_unit = ctx.params.get("time_unit")

    def load(self, trace: Path, meta: Path | None):
        """The validated trace (a file, or a directory of rank traces imported in memory) and the
        steps selected in it (None: every step)."""
        from graphwia.trace.files import open_trace
        from graphwia.trace.steps import resolve_steps

        trace = self.trace or trace
        loaded = open_trace(trace, meta, time_unit=self.time_unit)
        return loaded, (resolve_steps(loaded.steps, self.spans, source=str(trace)) if self.spans else None)


def _steps_and_trace(ctx: typer.Context, steps: list[str] | None) -> tuple[list[str] | None, Path | None]:
    """The step specs, and the trace when ``--steps`` took the place of the TRACE argument (else None).

    Options take one value, so in ``--steps 16 21 TRACE`` the parser reads
    TRACE = 21 and leaves TRACE over; when TRACE is a step spec naming no file
    and exactly one word left over is not one, that word is the trace.
    """
    spec = step_spec(ctx, steps)
    trace = ctx.params.get("trace")
    if not ctx.args or trace is None or Path(trace).exists() or not _is_step_spec(str(trace)):
        return spec, None
    others = [word for word in ctx.args if not _is_step_spec(word)]
    if len(others) != 1:
        return spec, None
    return (steps or []) + [str(trace)] + [word for word in ctx.args if word != others[0]], Path(others[0])


def _is_step_spec(word: str) -> bool:
    from graphwia.errors import UsageError
    from graphwia.trace.steps import parse_step_spec

    try:
        return bool(parse_step_spec(word))
    except UsageError:
        return False


@contextmanager
def progress(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr with the current phase; yields the callback to advance it."""
    if not enabled or not sys.stderr.isatty():
        yield lambda label: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)
        yield lambda label: bar.update(task, description=label)
