"""``graphwia whatif``: custom what-if scenarios from a YAML file."""

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

__all__ = ["register", "table_lines", "typical_note", "whatif"]


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_extra_args": True})(whatif)


@reports_errors
def whatif(
    ctx: typer.Context,
    trace: Path = typer.Argument(..., help=TRACE_HELP),
    scenarios: Path = typer.Option(..., "--scenarios", help="Scenario YAML: a baseline and a list of scenarios."),
    meta: Path | None = typer.Option(None, "--meta", help="Metadata YAML [default: meta-NAME.yaml beside the trace]."),
    steps: list[str] | None = typer.Option(
        None, "--steps", help="Only these steps: numbers and ranges, e.g. --steps 12 20-23."
    ),
    typical_from: TypicalFromChoice = typical_from_option(),
    time_unit: TimeUnitChoice | None = time_unit_option(),
    per_step: bool = typer.Option(False, "--per-step", help="Also show each step's speedups."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    timelines: Path | None = typer.Option(
        None, "--timelines", help="Write a Perfetto timeline per scenario to this directory."
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        metavar="ADDRESS",
        help="Simulate the scenarios on an existing dask.distributed cluster, e.g. tcp://host:8786 (same results).",
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Simulate the scenarios on this many local worker processes."
    ),
) -> None:
    """Simulate the scenarios of --scenarios on TRACE; print step times and speedups over the baseline."""
    from graphwia.analyses.whatif import load_scenarios, run_whatif
    from graphwia.outputs.whatif import whatif_dict, write_whatif_timelines
    from graphwia.utils.io import check_writable_dir, json_text

    if workers is not None and scheduler:
        fail("--workers and --scheduler exclude each other (the cluster decides its workers)", 2)
    if timelines is not None and (scheduler or workers is not None):
        fail("--timelines needs every op's times, which a local run keeps: drop --scheduler/--workers", 2)
    if scheduler:
        from graphwia.utils.cluster import check_address

        check_address(scheduler)  # before loading the trace: a typo costs no wait
    selection = StepSelection(ctx, steps)
    scenario_set = load_scenarios(scenarios)  # before the trace: a typo fails fast
    if timelines is not None:
        check_writable_dir(timelines)
    with progress(not as_json) as say:
        say("loading the trace")
        loaded, selected = selection.load(trace, meta)
        where = (
            f" on the dask cluster at {scheduler}"
            if scheduler
            else f" on {workers} local worker process(es)"
            if workers is not None
            else ""
        )
        say(f"simulating {len(scenario_set.scenarios)} scenario(s){where}")
        result = run_whatif(
            loaded,
            scenario_set,
            steps=selected,
            typical_from=typical_from,
            times=timelines is not None,
            scheduler=scheduler,
            workers=workers,
            progress=say,
        )
        written = []
        if timelines is not None:
            say("writing timelines")
            written = write_whatif_timelines(result, timelines)
    for warning in result.warnings:
        typer.echo(f"graphwia: warning: {warning}", err=True)
    if as_json:
        typer.echo(json_text(whatif_dict(result, per_step=per_step), indent=2))
        return
    typer.echo("\n".join(table_lines(result, per_step)))
    if written:
        typer.echo(f"wrote {len(written)} timeline(s) to {timelines}/: " + ", ".join(p.name for p in written))


def typical_note(result) -> str:
    """Which steps the typical weights came from, when only some steps were simulated."""
    n_trace = len(result.dag.trace.steps)
    if len(result.steps) == n_trace:
        return ""
    return f" (typical weights from {'all ' + str(n_trace) if result.typical_from == 'all' else 'these'} steps)"


def table_lines(result, per_step: bool) -> list[str]:
    """The summary table, and with ``per_step`` a step × scenario table of speedups."""
    width = max(len("scenario"), *(len(n) for n in result.names))
    lines = [
        f"baseline {result.baseline}: mean step time {result.baseline_step_time:.4f} s "
        f"over {len(result.steps)} step(s){typical_note(result)}",
        f"{'scenario':<{width}}  {'step time (s)':>13}  {'speedup':>8}",
    ]
    step_time, speedup = result.step_time.mean(axis=0), result.speedup
    lines += [f"{name:<{width}}  {step_time[i]:>13.4f}  {speedup[name]:>8.4f}" for i, name in enumerate(result.names)]
    if per_step:
        columns = [max(len(n), 8) for n in result.names]
        lines += [
            "",
            "speedup per step",
            f"{'step':>6}  {'baseline (s)':>12}  " + "  ".join(f"{n:>{w}}" for n, w in zip(result.names, columns)),
        ]
        step_speedup = result.step_speedup
        for s, step in enumerate(result.steps):
            values = "  ".join(f"{step_speedup[s, i]:>{w}.4f}" for i, w in enumerate(columns))
            lines.append(f"{step:>6}  {result.baseline_span[s]:>12.4f}  {values}")
    return lines
