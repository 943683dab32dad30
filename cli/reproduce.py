"""``graphwia reproduce``: analyse the published traces and compare with their published results."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import progress, reports_errors

__all__ = ["register", "reproduce"]


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce)


@reports_errors
def reproduce(
    data: Path = typer.Option(
        Path("../shared/data"), "--data", help="Directory with the published traces and results."
    ),
    out: Path = typer.Option(Path("out/reproduce"), "--out", help="Output directory for our results."),
    trace: list[str] | None = typer.Option(
        None, "--trace", help="Only these traces, repeatable (default: ST, SE and AR)."
    ),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip pictures, timelines and the HTML reports."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the table."),
) -> None:
    """Analyse ST, SE and AR and compare every number with the published results; exit 1 on any disagreement."""
    from graphwia.reproduce import TRACES, table_lines
    from graphwia.reproduce import reproduce as run
    from graphwia.utils.io import check_writable_dir

    check_writable_dir(out)
    with progress(not quiet) as say:
        comparisons = run(data, out, names=trace or TRACES, plots=not no_plots, progress=say)
    typer.echo("\n".join(table_lines(comparisons)))
    if not quiet:
        typer.echo(f"outputs in {out}/")
    if not all(c.agrees for c in comparisons):
        raise typer.Exit(1)
