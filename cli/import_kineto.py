"""``graphwia import kineto``: PyTorch profiler traces (one per rank) → trace-NAME.parquet + meta-NAME.yaml."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import progress, reports_errors

__all__ = ["kineto", "register"]


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Convert profiler traces into graphwia's op table (trace-NAME.parquet + meta-NAME.yaml).",
        no_args_is_help=True,
    )
    sub.command("kineto")(kineto)
    app.add_typer(sub, name="import")


@reports_errors
def kineto(
    inputs: list[Path] = typer.Argument(
        ..., metavar="INPUT...", help="A directory of per-rank traces (.json / .json.gz), or the files."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory for trace-NAME.parquet and meta-NAME.yaml."),
    name: str = typer.Option(..., "--name", help="Trial name (file names and trial_name)."),
    mapping: Path | None = typer.Option(
        None, "--map", metavar="MAP.yaml", help="Rules naming the ops of traces annotated otherwise."
    ),
    pp: int | None = typer.Option(None, "--pp", help="Pipeline stages, when distributedInfo names no groups."),
    dp: int | None = typer.Option(None, "--dp", help="Data-parallel size (with --pp)."),
    tp: int = typer.Option(1, "--tp", help="Tensor-parallel size (with --pp and --dp)."),
    order: str = typer.Option("tp-cp-ep-dp-pp", "--order", help="Rank order, fastest-varying first (Megatron's)."),
    workers: int | None = typer.Option(
        None, "--workers", help="Local processes reading files (default: one per CPU; none for less than 64 MB in all)."
    ),
    scheduler: str | None = typer.Option(
        None, "--scheduler", metavar="ADDR", help="Read the files on this dask scheduler's workers (tcp://host:8786)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Import a job's PyTorch profiler (Kineto) traces and print what was inferred."""
    from graphwia.errors import UsageError
    from graphwia.trace.files import write_trace
    from graphwia.trace.kineto import Layout, import_kineto, read_mapping
    from graphwia.utils.io import check_writable_dir
    from graphwia.utils.names import check_name

    check_name(name, what="--name", source=None)  # it names the output files: checked before any input is read
    if (pp is None) != (dp is None):
        raise UsageError("--pp and --dp go together (with --tp and --order when needed)")
    if workers is not None and scheduler:
        raise UsageError("--workers and --scheduler exclude each other")
    layout = Layout(pp=pp, dp=dp, tp=tp, order=order) if pp is not None and dp is not None else None  # both or neither
    rules = read_mapping(mapping) if mapping else None
    check_writable_dir(out)
    with progress(not quiet) as say:
        trace, report = import_kineto(
            inputs, name=name, mapping=rules, layout=layout, workers=workers, scheduler=scheduler, progress=say
        )
        say("writing the op table")
        trace_path, meta_path = write_trace(trace, out, name=name)
    if not quiet:
        typer.echo("\n".join(report.lines()))
        typer.echo(f"wrote {trace_path} and {meta_path}")
