"""The ``graphwia`` command line: parses arguments and calls the library.

Each command lives in its own module of this package with a
``register(app)`` function; :data:`COMMANDS` lists them in help order.
"""

from __future__ import annotations

import importlib

import typer

from .common import State, tune_malloc

COMMANDS = ("analyze", "whatif", "critical_path", "export_dag", "export_chakra", "fleet", "synth", "import_kineto", "reproduce")

app = typer.Typer(
    name="graphwia",
    help="What-if analysis of stragglers in large-model training traces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")) -> None:
    """graphwia: why is this training job slow, and who is to blame?"""
    State.debug = debug
    tune_malloc()


for _name in COMMANDS:
    importlib.import_module(f"{__package__}.{_name}").register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
