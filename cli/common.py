"""What every command shares: error reporting, step lists, progress, console."""

from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Literal

import typer


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


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error to stderr and exit with ``code``."""
    message = " ".join(str(message).splitlines())  # line breaks quoted from a bad file stay on the line
    typer.echo(f"graphwia: error: {message}", err=True)
    raise typer.Exit(code)


def reports_errors(command: Callable) -> Callable:
    """Turn graphwia errors (and unexpected ones) into one line and an exit code.

    With ``--debug`` the traceback is shown instead.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from graphwia.errors import GraphwiaError, first_line

        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except GraphwiaError as exc:
            if State.debug:
                raise
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:  # a bug or an unforeseen input: still one line, unless --debug
            if State.debug:
                raise
            fail(f"unexpected {type(exc).__name__}: {first_line(exc)} (run with --debug for the traceback)", 1)

    return wrapper


def step_spec(ctx: typer.Context, steps: list[str] | None) -> list[str] | None:
    """Values of ``--steps`` plus the step specs that followed it (``--steps 12 20-23``)."""
    extra = list(ctx.args)
    if extra and not steps:
        raise typer.BadParameter(f"unexpected argument(s) {' '.join(extra)}")
    return (steps or []) + extra or None


#: Values of ``--typical-from``: graphwia.model.weights.TypicalFrom (spelled out so ``--help`` loads no numpy).
TypicalFromChoice = Literal["selected", "all"]


def typical_from_option():
    """``--typical-from selected|all``, for the commands that take ``--steps`` (annotate it TypicalFromChoice)."""
    return typer.Option("selected", "--typical-from",
                        help="With --steps: take the typical op weights (the ideal) from the selected steps "
                             "only, or from all steps of the trace.")


class StepSelection:
    """``--steps`` parsed before the trace is read (a typo fails fast), resolved once it is."""

    def __init__(self, ctx: typer.Context, steps: list[str] | None):
        from graphwia.trace.steps import parse_step_spec

        spec = step_spec(ctx, steps)
        self.spans = parse_step_spec(spec) if spec else None

    def load(self, trace: Path, meta: Path | None):
        """The validated trace (a file, or a directory of rank traces imported in memory) and the
        steps selected in it (None: every step)."""
        from graphwia.trace.files import open_trace
        from graphwia.trace.steps import resolve_steps

        loaded = open_trace(trace, meta)
        return loaded, (resolve_steps(loaded.steps, self.spans, str(trace)) if self.spans else None)


@contextmanager
def progress(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr with the current phase; yields the callback to advance it."""
    if not enabled or not sys.stderr.isatty():
        yield lambda label: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("starting", total=None)
        yield lambda label: bar.update(task, description=label)
