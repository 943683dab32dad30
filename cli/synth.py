"""``graphwia synth``: write a synthetic trace with injected straggler causes."""

from __future__ import annotations

import functools
from pathlib import Path

import typer

from .common import fail, reports_errors

__all__ = ["OPTION_OF", "parse_fields", "register", "synth"]

#: synthesize() argument -> the option a user typed, to name it in errors.
OPTION_OF = {
    "dp": "--dp",
    "pp": "--pp",
    "vpp": "--vpp",
    "microbatches": "--microbatches",
    "steps": "--steps",
    "tp": "--tp",
    "slow_workers": "--slow-worker",
    "slow_stage": "--slow-stage",
    "seqlen_cv": "--seqlen-cv",
    "gc_pauses": "--gc-pause",
    "slow_links": "--slow-link",
    "slow_collectives": "--slow-collective",
    "name": "--name",
    "size": "--dp/--pp/--vpp/--microbatches/--steps",
}


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)


def parse_fields(text: str, option: str, form: str, types: tuple) -> tuple:
    """Split ``text`` at ':' into len(types) values of those types, or fail naming ``option``."""
    parts = text.split(":")
    try:
        if len(parts) != len(types):
            raise ValueError
        return tuple(kind(part) for kind, part in zip(types, parts))
    except ValueError:
        fail(f"{option}: expected {form}, got {text!r}", 2)


@reports_errors
def synth(
    out: Path = typer.Option(..., "--out", help="Output directory for trace-NAME.parquet and meta-NAME.yaml."),
    name: str = typer.Option(..., "--name", help="Trial name (file names and trial_name)."),
    dp: int = typer.Option(..., "--dp", help="Data-parallel size."),
    pp: int = typer.Option(..., "--pp", help="Pipeline stages."),
    vpp: int = typer.Option(1, "--vpp", help="Model chunks per stage; >= 2 gives interleaved 1F1B."),
    microbatches: int = typer.Option(
        ..., "--microbatches", help="Microbatches per step (a multiple of --pp when --vpp >= 2)."
    ),
    steps: int = typer.Option(..., "--steps", help="Training steps."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same trace."),
    slow_worker: list[str] | None = typer.Option(
        None, "--slow-worker", metavar="DP:STAGE:FACTOR", help="Multiply one worker's compute durations (repeatable)."
    ),
    slow_stage: str | None = typer.Option(
        None, "--slow-stage", metavar="STAGE:FACTOR", help="Multiply one stage's compute durations."
    ),
    seqlen_cv: float = typer.Option(
        0.0, "--seqlen-cv", help="CV of per-microbatch compute (sequence-length imbalance)."
    ),
    gc_pause: list[str] | None = typer.Option(
        None,
        "--gc-pause",
        metavar="P:SECONDS",
        help="With probability P per worker-step, gc takes SECONDS longer (repeatable).",
    ),
    slow_link: list[str] | None = typer.Option(
        None,
        "--slow-link",
        metavar="DP:STAGE:FACTOR",
        help="Multiply the p2p transfer times between STAGE and STAGE+1 of dp rank DP (repeatable).",
    ),
    slow_collective: list[str] | None = typer.Option(
        None,
        "--slow-collective",
        metavar="STAGE:FACTOR",
        help="Multiply one stage's DP collective transfer times (repeatable).",
    ),
    no_dp_overlap: bool = typer.Option(
        False, "--no-dp-overlap", help="Reduce gradients in the step's tail, not overlapped."
    ),
    tp: int = typer.Option(1, "--tp", help="Tensor-parallel size (metadata and global ranks only)."),
    format_: str = typer.Option(
        "parquet",
        "--format",
        metavar="parquet|kineto",
        help="parquet: trace-NAME.parquet + meta-NAME.yaml; kineto: OUT/NAME/rank{R}.json.gz, "
        "the GPU traces torch.profiler would write (graphwia import kineto reads them).",
    ),
    nccl_names: str = typer.Option(
        "ncclDevKernel",
        "--nccl-names",
        metavar="ncclDevKernel|ncclKernel",
        help="With --format kineto: NCCL kernel names of NCCL >= 2.19 or older.",
    ),
) -> None:
    """Write a synthetic Megatron-style trace (1F1B / interleaved) with injected straggler causes."""
    from graphwia.synth.generate import SynthArgumentError, write_synth
    from graphwia.synth.kineto import NCCL_KERNELS, synth_kineto

    if format_ not in ("parquet", "kineto"):
        fail(f"--format: expected parquet or kineto, got {format_!r}", 2)
    if nccl_names not in NCCL_KERNELS:
        fail(f"--nccl-names: expected {' or '.join(NCCL_KERNELS)}, got {nccl_names!r}", 2)
    writer = write_synth if format_ == "parquet" else functools.partial(synth_kineto, nccl=nccl_names)

    slow_workers = [
        parse_fields(text, "--slow-worker", "DP:STAGE:FACTOR, e.g. 3:1:1.5", (int, int, float))
        for text in slow_worker or []
    ]
    stage = parse_fields(slow_stage, "--slow-stage", "STAGE:FACTOR, e.g. 3:2.0", (int, float)) if slow_stage else None
    gc_pauses = [
        parse_fields(text, "--gc-pause", "P:SECONDS, e.g. 0.05:1.5", (float, float)) for text in gc_pause or []
    ]
    links = [
        parse_fields(text, "--slow-link", "DP:STAGE:FACTOR, e.g. 1:0:50", (int, int, float)) for text in slow_link or []
    ]
    collectives = [
        parse_fields(text, "--slow-collective", "STAGE:FACTOR, e.g. 2:4", (int, float))
        for text in slow_collective or []
    ]
    try:
        written = writer(
            out,
            name,
            dp=dp,
            pp=pp,
            vpp=vpp,
            microbatches=microbatches,
            steps=steps,
            seed=seed,
            slow_workers=slow_workers,
            slow_stage=stage,
            seqlen_cv=seqlen_cv,
            gc_pauses=gc_pauses,
            slow_links=links,
            slow_collectives=collectives,
            dp_overlap=not no_dp_overlap,
            tp=tp,
        )
    except SynthArgumentError as exc:
        fail(f"{OPTION_OF.get(exc.argument, exc.argument)}: {exc}", 2)
    first, second = written  # parquet: trace and metadata files; kineto: the directory and its rank traces
    typer.echo(
        f"wrote {len(second)} rank trace(s) to {first}" if isinstance(second, list) else f"wrote {first} and {second}"
    )
