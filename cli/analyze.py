"""``graphwia analyze``: the full what-if analysis of one trace."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (
    TRACE_HELP,
    StepSelection,
    TimeUnitChoice,
    TypicalFromChoice,
    fail,
    progress,
    reports_errors,
    time_unit_option,
    typical_from_option,
)

__all__ = ["analyze", "register"]


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_extra_args": True})(analyze)


@reports_errors
def analyze(
    ctx: typer.Context,
    trace: Path = typer.Argument(..., help=TRACE_HELP),
    meta: Path | None = typer.Option(None, "--meta", help="Metadata YAML [default: meta-NAME.yaml beside the trace]."),
    out: Path = typer.Option(Path("out"), "--out", help="Output directory."),
    steps: list[str] | None = typer.Option(
        None, "--steps", help="Analyse only these steps: numbers and ranges, e.g. --steps 12 20-23."
    ),
    typical_from: TypicalFromChoice = typical_from_option(),
    time_unit: TimeUnitChoice | None = time_unit_option(),
    decompose_threshold: float = typer.Option(
        1.03, "--decompose-threshold", help="Attribute a slowdown only when it reaches this."
    ),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip pictures, timelines and the HTML report."),
    per_worker: bool = typer.Option(
        True, "--per-worker/--no-per-worker", help="Exact attribution to every single worker."
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        metavar="ADDRESS",
        help="Evaluate the scenario families on an existing dask.distributed "
        "cluster, e.g. tcp://host:8786 (same results).",
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Evaluate the scenario families on this many local worker processes."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Analyse TRACE: slowdown S, its attribution, M_S and M_W; write the results to --out."""
    from graphwia import analyze as run_analysis
    from graphwia.outputs.job import undefined_values, write_outputs
    from graphwia.outputs.summary import summary_lines
    from graphwia.utils.io import check_writable_dir

    if workers is not None and scheduler:
        fail("--workers and --scheduler exclude each other (the cluster decides its workers)", 2)
    if scheduler:
        from graphwia.utils.cluster import check_address

        check_address(scheduler)  # before loading the trace: a typo costs no wait
    selection = StepSelection(ctx, steps)
    check_writable_dir(out)
    with progress(not quiet) as say:
        say("loading the trace")
        loaded, selected = selection.load(trace, meta)
        analysis = run_analysis(
            loaded,
            steps=selected,
            typical_from=typical_from,
            decompose_threshold=decompose_threshold,
            per_worker=per_worker,
            progress=say,
            scheduler=scheduler,
            workers=workers,
        )
        say("writing outputs")
        written = write_outputs(analysis, out, plots=not no_plots)
    for warning in analysis.warnings + undefined_values(analysis):
        typer.echo(f"graphwia: warning: {warning}", err=True)
    if not quiet:
        typer.echo("\n".join(summary_lines(analysis)))
        typer.echo(f"wrote {len(written)} file(s) to {out}/: " + ", ".join(p.name for p in written))
