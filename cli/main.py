"""The ``graphwia`` command line: parses arguments and calls the library.

Each command lives in its own module of this package with a
``register(app)`` function; :data:`COMMANDS` lists them in help order.
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup

from .common import State, handle_termination, print_error, tune_malloc

#: The base class of typer's usage errors: click's (typer 0.28) or that of typer's own copy of click (0.29 on),
#: found from the public typer.BadParameter so that it is always the one typer raises.
ClickException: type[Exception] = next(b for b in typer.BadParameter.__mro__ if b.__name__ == "ClickException")

__all__ = ["COMMANDS", "main", "show_version"]

COMMANDS = (
    "analyze",
    "whatif",
    "critical_path",
    "export_dag",
    "export_chakra",
    "fleet",
    "synth",
    "import_kineto",
    "reproduce",
)


class OneLineErrors(TyperGroup):
    """The ``graphwia`` command group, whose usage errors (a missing argument, an unknown option, a value of the
    wrong type) are one ``graphwia: error:`` line on stderr, as every other error of graphwia is, rather than
    typer's usage text and framed box. The exit codes stay click's: 2 for a usage error."""

    def main(self, args=None, prog_name=None, **options):
        standalone = options.pop("standalone_mode", True)
        if not standalone:
            return super().main(args, prog_name, standalone_mode=False, **options)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **options)  # typer.Exit(n) comes back as n
        except ClickException as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
                hint = f" (see '{exc.ctx.command_path} -h')" if getattr(exc, "ctx", None) is not None else ""
                print_error(exc.format_message() + hint)
            sys.exit(exc.exit_code)
        except typer.Abort:  # end of input at a prompt
            print_error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="graphwia",
    help="What-if analysis of stragglers in large-model training traces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def show_version(value: bool) -> None:
    """``--version``: print the installed version and stop."""
    if value:
        from importlib.metadata import version

        typer.echo(f"graphwia {version('graphwia')}")
        raise typer.Exit()


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
    version: bool = typer.Option(
        False, "--version", callback=show_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """graphwia: why is this training job slow, and who is to blame?"""
    State.debug = debug
    handle_termination()
    tune_malloc()


for _name in COMMANDS:
    importlib.import_module(f"{__package__}.{_name}").register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
