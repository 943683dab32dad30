"""``graphwia export-dag``: write the explicit DAG (or part of it) for other graph tools."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import TRACE_HELP, StepSelection, TimeUnitChoice, progress, reports_errors, time_unit_option

__all__ = ["export_dag", "register"]


def register(app: typer.Typer) -> None:
    app.command("export-dag", context_settings={"allow_extra_args": True})(export_dag)


@reports_errors
def export_dag(
    ctx: typer.Context,
    trace: Path = typer.Argument(..., help=TRACE_HELP),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output file; the extension picks the format: .graphml, .gexf, "
        ".json (node-link), .dot/.gv (each optionally .gz), .parquet (edge "
        "table, with the node table in NAME.nodes.parquet).",
    ),
    meta: Path | None = typer.Option(None, "--meta", help="Metadata YAML [default: meta-NAME.yaml beside the trace]."),
    steps: list[str] | None = typer.Option(
        None, "--steps", help="Only these steps: numbers and ranges, e.g. --steps 12 20-23."
    ),
    workers: list[str] | None = typer.Option(
        None, "--workers", metavar="DP:STAGE", help="Only these workers, e.g. --workers 0:3,1:3 or 0:* (repeatable)."
    ),
    time_unit: TimeUnitChoice | None = time_unit_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Export the dependency DAG of TRACE: op instances, group barriers and step sources, with edge kinds."""
    from graphwia import build_dag
    from graphwia.model.graph import parse_workers
    from graphwia.outputs.dag_export import check_format
    from graphwia.outputs.dag_export import export_dag as write_graph

    selection = StepSelection(ctx, steps)
    chosen_workers = parse_workers(workers) if workers else None
    check_format(out)
    with progress(not quiet) as say:
        say("loading the trace")
        loaded, selected = selection.load(trace, meta)
        say("building the DAG")
        dag = build_dag(loaded, steps=selected)
        say(f"writing {out.name}")
        written = write_graph(dag, out, workers=chosen_workers)
    if not quiet:
        typer.echo("wrote " + ", ".join(map(str, written)))
