"""``graphwia critical-path``: the chain of ops that sets each step's time, for one scenario."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (
    TRACE_HELP,
    StepSelection,
    TimeUnitChoice,
    TypicalFromChoice,
    progress,
    reports_errors,
    time_unit_option,
    typical_from_option,
)

__all__ = ["critical_path", "register"]


def register(app: typer.Typer) -> None:
    app.command("critical-path", context_settings={"allow_extra_args": True})(critical_path)


@reports_errors
def critical_path(
    ctx: typer.Context,
    trace: Path = typer.Argument(..., help=TRACE_HELP),
    out: Path = typer.Option(
        ..., "--out", help="Output file: .json (paths and summary) or .csv (one row per path element)."
    ),
    meta: Path | None = typer.Option(None, "--meta", help="Metadata YAML [default: meta-NAME.yaml beside the trace]."),
    scenario: str = typer.Option(
        "base", "--scenario", help="base, nodelay, ideal, or a scenario of the --whatif file."
    ),
    whatif: Path | None = typer.Option(
        None, "--whatif", help="Scenario YAML (as for graphwia whatif) defining --scenario."
    ),
    steps: list[str] | None = typer.Option(
        None, "--steps", help="Only these steps: numbers and ranges, e.g. --steps 12 20-23."
    ),
    typical_from: TypicalFromChoice = typical_from_option(),
    time_unit: TimeUnitChoice | None = time_unit_option(),
    timeline: Path | None = typer.Option(
        None, "--timeline", help="Also write a Perfetto timeline (FILE.json.gz) with the paths overlaid."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Critical path of every step of TRACE in one scenario: which ops on which workers set the pace."""
    from graphwia.analyses.critical_path import scenario_critical_path
    from graphwia.analyses.whatif import load_scenarios
    from graphwia.outputs.critical_path import (
        check_output,
        summary_lines,
        write_critical_paths,
        write_critical_timeline,
    )

    selection = StepSelection(ctx, steps)
    check_output(path=out, timeline=timeline)
    scenarios = load_scenarios(whatif) if whatif else None
    with progress(not quiet) as say:
        say("loading the trace")
        loaded, selected = selection.load(trace, meta)
        say(f"simulating {scenario} and walking the critical paths")
        paths = scenario_critical_path(loaded, scenario, scenarios=scenarios, steps=selected, typical_from=typical_from)
        say("writing outputs")
        written = [write_critical_paths(paths, out)]
        if timeline:
            written.append(write_critical_timeline(paths, timeline))
    if not quiet:
        typer.echo("\n".join(summary_lines(paths)))
        typer.echo("wrote " + ", ".join(str(p) for p in written))
