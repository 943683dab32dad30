"""``graphwia fleet``: analyse many jobs in parallel and summarise the fleet."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .common import TimeUnitChoice, fail, reports_errors, time_unit_option

if TYPE_CHECKING:  # pragma: no cover
    from graphwia.fleet.run import JobRecord

__all__ = ["fleet", "job_bar", "register"]


def register(app: typer.Typer) -> None:
    app.command("fleet")(fleet)


@reports_errors
def fleet(
    source: Path = typer.Argument(
        ...,
        metavar="INPUT",
        help="Directory of trace-NAME.parquet + meta-NAME.yaml pairs, or a manifest "
        "file with one 'TRACE [META]' per line.",
    ),
    out: Path = typer.Option(..., "--out", help="Output directory: jobs/NAME/, fleet.csv, fleet.parquet, fleet.html."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Local worker processes [default: the CPUs usable here, within a container's CPU limit].",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        metavar="ADDRESS",
        help="Run on an existing dask.distributed cluster, e.g. tcp://host:8786 "
        "(its workers must see INPUT and --out).",
    ),
    job_timeout: float | None = typer.Option(
        None,
        "--job-timeout",
        metavar="SECONDS",
        min=0.001,
        help="Stop a job running longer than this on a local worker and record it as failed (default: no limit).",
    ),
    time_unit: TimeUnitChoice | None = time_unit_option(),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip each job's pictures, timelines and report."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Analyse every job of INPUT; jobs already complete in --out are skipped, so a re-run resumes."""
    from graphwia.fleet.report import fleet_summary, write_fleet
    from graphwia.fleet.run import discover_jobs, run_fleet
    from graphwia.outputs.summary import STRAGGLER_S
    from graphwia.utils.io import check_writable_dir

    if workers is not None and scheduler:
        fail("--workers and --scheduler exclude each other (the cluster decides its workers)", 2)
    if job_timeout is not None and scheduler:
        fail("--job-timeout and --scheduler exclude each other (a dask cluster does not stop running tasks)", 2)
    jobs = discover_jobs(source)
    check_writable_dir(out)
    with job_bar(len(jobs), enabled=not quiet) as advance:
        run = run_fleet(
            jobs,
            out,
            workers=workers,
            scheduler=scheduler,
            plots=not no_plots,
            job_timeout=job_timeout,
            time_unit=time_unit,
            on_done=advance,
        )
    paths = write_fleet(run, out)
    for record in run.records:
        for warning in record.warnings:
            typer.echo(f"graphwia: warning: {record.name}: {warning}", err=True)
    for record in run.records:
        if not record.ok:
            typer.echo(f"graphwia: job {record.name} failed: {record.error}", err=True)
    if not quiet:
        s = fleet_summary(run.jobs)
        typer.echo(
            f"{s['jobs']} job(s): {len(run.analysed) - s['failed']} analysed, {len(run.skipped)} already "
            f"complete, {s['failed']} failed"
        )
        typer.echo(
            f"jobs with S >= {STRAGGLER_S}: {s['stragglers']} of {s['ok']}; wasted GPU hours "
            f"{s['wasted_gpu_hours']:.2f} of {s['gpu_hours']:.2f}"
        )
        typer.echo(f"wrote {', '.join(p.name for p in paths.values())} and jobs/ to {out}/")
    if run.failed:
        fail(
            f"{len(run.failed)} of {len(jobs)} job(s) failed: {', '.join(run.failed)} (see fleet.csv; "
            "re-run to retry them)"
        )


@contextmanager
def job_bar(total: int, enabled: bool) -> Iterator[Callable[[JobRecord, bool], None]]:
    """A progress bar over jobs on stderr; yields the ``on_done`` callback of ``run_fleet``."""
    if not enabled or not sys.stderr.isatty():
        yield lambda record, analysed: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("jobs", total=total)

        def advance(record: JobRecord, analysed: bool) -> None:
            state = "failed" if not record.ok else ("done" if analysed else "already complete")
            bar.update(task, advance=1, description=f"{record.name}: {state}")

        yield advance
