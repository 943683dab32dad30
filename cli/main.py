"""The ``graphwia`` command line: parses arguments and calls the library.

Each command lives in its own module of this package with a
``register(app)`` function; :data:`COMMANDS` lists them in help order.
"""

from __future__ import annotations

import importlib

import typer

from .common import State, handle_termination, tune_malloc

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

app = typer.Typer(
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
