"""``graphwia export-chakra``: one scenario of a trace as Chakra execution traces for network simulators."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import TRACE_HELP, StepSelection, TypicalFromChoice, progress, reports_errors, typical_from_option

__all__ = ["export_chakra", "register"]


def register(app: typer.Typer) -> None:
    app.command("export-chakra", context_settings={"allow_extra_args": True})(export_chakra)


@reports_errors
def export_chakra(
    ctx: typer.Context,
    trace: Path = typer.Argument(..., help=TRACE_HELP),
    out: Path = typer.Option(
        ..., "--out", help="Output folder: NAME.<rank>.et per traced rank, NAME.comm_groups.json and NAME.README.md."
    ),
    meta: Path | None = typer.Option(None, "--meta", help="Metadata YAML [default: meta-NAME.yaml beside the trace]."),
    scenario: str | None = typer.Option(
        None,
        "--scenario",
        help="base, nodelay, ideal, or a scenario of the --whatif file (required with it) [default: base].",
    ),
    whatif: Path | None = typer.Option(
        None, "--whatif", help="Scenario YAML (as for graphwia whatif) defining --scenario (which must name one)."
    ),
    steps: list[str] | None = typer.Option(
        None, "--steps", help="Only these steps: numbers and ranges, e.g. --steps 12 20-23."
    ),
    typical_from: TypicalFromChoice = typical_from_option(),
    activation_bytes: int | None = typer.Option(
        None,
        "--activation-bytes",
        min=0,
        help="Bytes of each pipeline send/receive [default: the trace metadata's (imported profiler traces), "
        "else unknown, 0].",
    ),
    grad_bytes: int | None = typer.Option(
        None,
        "--grad-bytes",
        min=0,
        help="Bytes of each DP collective op [default: the trace metadata's, else unknown, 0].",
    ),
    name: str | None = typer.Option(None, "--name", help="File name prefix [default: TRIAL-SCENARIO]."),
    compact_ranks: bool = typer.Option(
        False, "--compact-ranks", help="Number the files 0..n-1 in global-rank order (one per simulated NPU)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors and warnings."),
) -> None:
    """Write one scenario of TRACE as Chakra execution traces (one per rank) that ASTRA-sim replays."""
    from graphwia.analyses.whatif import load_scenarios
    from graphwia.errors import UsageError
    from graphwia.outputs.chakra import export_chakra as write_chakra
    from graphwia.utils.names import check_name

    if whatif is not None and scenario is None:
        raise UsageError(f"--whatif {whatif} needs --scenario NAME: which of its scenarios to export")
    scenario = scenario or "base"
    selection = StepSelection(ctx, steps)
    if name is not None:
        check_name(name, what="--name", source=None)
    scenarios = load_scenarios(whatif) if whatif else None
    with progress(not quiet) as say:
        say("loading the trace")
        loaded, selected = selection.load(trace, meta)
        say(f"writing the {scenario} scenario as Chakra execution traces")
        export = write_chakra(
            loaded,
            out,
            scenario=scenario,
            scenarios=scenarios,
            steps=selected,
            typical_from=typical_from,
            activation_bytes=activation_bytes,
            grad_bytes=grad_bytes,
            name=name,
            compact_ranks=compact_ranks,
        )
    for note in export.notes:
        typer.echo(f"graphwia: warning: {note}", err=True)
    if not quiet:
        typer.echo("message sizes (comm_size): " + "; ".join(_size_words(export.message_sizes)))
        typer.echo(
            f"{len(export.files)} ranks, {export.n_nodes} nodes ({export.n_bytes / 1e6:.1f} MB); "
            f"replayed mean step time {export.replay_step_time.mean():.6f} s "
            f"(scenario {export.step_time.mean():.6f} s)"
        )
        typer.echo(f"wrote {export.out_dir / export.name}.<rank>.et, {export.comm_groups.name}, {export.readme.name}")


def _size_words(sizes: dict[str, tuple[int | None, str]]) -> list[str]:
    """Where each message size came from, in the command's words."""
    out = []
    for key, what in (("activation_bytes", "p2p messages"), ("grad_bytes", "DP collective ops")):
        size, source = sizes.get(key, (None, "unknown"))
        origin = {
            "given": f"from --{key.replace('_', '-')}",
            "metadata": "from the trace's metadata",
        }.get(source, "unknown, written as 0")
        out.append(f"{what} {size} B ({origin})" if size is not None else f"{what} {origin}")
    return out
