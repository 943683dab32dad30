"""Benchmark of the Kineto import: MB/s per core and peak memory per worker (issue 12).

Self-contained: writes a synthetic GPU job's per-rank traces (``graphwia.synth.kineto``, about
``--mb`` MB of JSON per rank) into a temporary directory, then measures, each in a fresh process
(its own peak RSS), the best CPU time of ``--repeat`` runs:

1. decoding the first file alone (reading, decoding, freeing): the standard library's ``json``;
   msgspec decoding the importer's typed events (graphwia.trace.kineto.events) from the whole file
   at once, and in the importer's chunks; and msgspec decoding the chunks into empty structs, the
   parsing floor;
2. each file read by ``read_rank`` (decode, columns, ops, spans, steps), and the first file gzipped;
3. the whole import (``import_kineto``) with ``--workers`` local processes: wall seconds, MB/s in
   all and per worker.

MB are those of the JSON text (decompressed, for the gzipped file); the load average is printed,
as other work on the machine inflates CPU times too (shared caches and cores).

Usage::

    python benchmarks/bench_import.py                    # 8 ranks x ~100 MB, 2 workers
    python benchmarks/bench_import.py --ranks 4 --mb 20  # quicker
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

#: Bytes of JSON one synthetic step adds to a rank's file with the job shape below (measured, roughly).
BYTES_PER_STEP = {"kernels": 40, "per_step": 0.64e6}
DECODERS = ("json", "msgspec-whole", "msgspec-chunks", "msgspec-chunks-empty")


def write_job(directory: Path, ranks: int, mb: float) -> list[Path]:
    """A dp 2 x pp (ranks / 2) job, 8 microbatches, 40 kernels per compute, ~mb MB per rank."""
    from graphwia.synth.generate import synthesize
    from graphwia.synth.kineto import write_kineto
    from graphwia.trace.optable import Trace

    steps = max(1, round(mb * 1e6 / BYTES_PER_STEP["per_step"]))
    frame, meta = synthesize(name="bench", dp=2, pp=ranks // 2, microbatches=8, steps=steps, seed=0)
    trace = Trace.from_frame(frame, meta)
    return write_kineto(trace, directory, kernels=BYTES_PER_STEP["kernels"])


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: VmHWM where /proc has it (ru_maxrss keeps, across the exec of a
    spawned worker, the peak of the process that forked it)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_one(path: str, repeat: int) -> dict:
    """Read one rank file ``repeat`` times in this (fresh) process: the best wall and CPU seconds
    (the least disturbed by other work on the machine), and the process's peak RSS."""
    from graphwia.trace.kineto.ranks import read_rank

    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        ops = read_rank(path)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        del ops
    return {
        "file": Path(path).name,
        "seconds": min(walls),
        "cpu_seconds": min(cpus),
        "peak_rss_mb": peak_rss_mb(),
        "mb": json_bytes(path) / 1e6,
    }


def json_bytes(path: str) -> int:
    """Bytes of JSON in a trace file (decompressed)."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    if not gzipped:
        return os.path.getsize(path)
    with gzip.open(path, "rb") as handle:
        return sum(len(block) for block in iter(lambda: handle.read(1 << 24), b""))


def decode_with(path: str, decoder: str, repeat: int) -> dict:
    """Best CPU seconds of reading, decoding and freeing one file with one of :data:`DECODERS` (garbage
    collector paused, as in the importer), and the process's peak RSS."""
    import msgspec

    from graphwia.trace.kineto import events

    empty = msgspec.defstruct("Empty", [], tag="X", tag_field="ph", gc=False)
    floor = events._Pass(empty, msgspec.defstruct("AnyEmpty", [("ph", str, "")], gc=False))
    gc.disable()
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        if decoder == "json":
            decoded = json.loads(Path(path).read_bytes())["traceEvents"]
        elif decoder == "msgspec-whole":
            decoded = events._COMPLETE_PASS.whole.decode(Path(path).read_bytes()).traceEvents
        else:
            decoded = events._scan(
                Path(path), floor if decoder.endswith("empty") else events._COMPLETE_PASS, lambda records: None
            )
        del decoded
        best = min(best, time.process_time() - start)
    size = Path(path).stat().st_size
    return {"decoder": decoder, "seconds": best, "mb_per_s": size / 1e6 / best, "peak_rss_mb": peak_rss_mb()}


def fresh(function, *args) -> dict:
    """Run ``function(*args)`` in a new process (its own peak RSS)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def report_read(r: dict) -> str:
    return (
        f"read_rank {r['file']}: {r['mb']:.0f} MB in {r['seconds']:.2f} s (CPU {r['cpu_seconds']:.2f} s): "
        f"{r['mb'] / r['cpu_seconds']:.0f} MB/s per core, peak RSS {r['peak_rss_mb']:.0f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=8, help="ranks (even; dp 2 x pp ranks/2)")
    parser.add_argument("--mb", type=float, default=100.0, help="approximate MB of JSON per rank")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes of the whole import")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best CPU time counts")
    parser.add_argument(
        "--keep",
        type=Path,
        help="write the traces here and keep them, or reuse those there (default: a temporary directory)",
    )
    args = parser.parse_args(argv)
    if args.ranks < 2 or args.ranks % 2:
        parser.error("--ranks must be even and at least 2")
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp) / "job"
        start = time.perf_counter()
        files = sorted(directory.glob("rank*.json")) if args.keep and directory.is_dir() else []
        if files:
            print(f"reusing the {len(files)} rank traces in {directory}", flush=True)
        else:
            files = write_job(directory, args.ranks, args.mb)
            print(f"wrote {len(files)} rank traces in {time.perf_counter() - start:.1f} s ({directory})", flush=True)
        total_mb = sum(p.stat().st_size for p in files) / 1e6
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)

        for decoder in DECODERS:
            r = fresh(decode_with, str(files[0]), decoder, args.repeat)
            print(
                f"decode {files[0].name} with {decoder:21s}: {r['seconds']:.2f} s CPU, {r['mb_per_s']:4.0f} MB/s, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )

        per_file = [fresh(read_one, str(path), args.repeat) for path in files]
        for r in per_file:
            print(report_read(r), flush=True)
        rates = [r["mb"] / r["cpu_seconds"] for r in per_file]
        print(
            f"per core (CPU time): {min(rates):.0f}-{max(rates):.0f} MB/s; peak RSS per worker "
            f"{min(r['peak_rss_mb'] for r in per_file):.0f}-{max(r['peak_rss_mb'] for r in per_file):.0f} MB "
            f"for {min(r['mb'] for r in per_file):.0f}-{max(r['mb'] for r in per_file):.0f} MB files",
            flush=True,
        )

        packed = Path(tmp) / (files[0].name + ".gz")
        with open(files[0], "rb") as source, gzip.open(packed, "wb", compresslevel=6) as target:
            while block := source.read(1 << 24):
                target.write(block)
        r = fresh(read_one, str(packed), args.repeat)
        print(f"{report_read(r)} ({packed.stat().st_size / 1e6:.0f} MB gzipped)", flush=True)
        packed.unlink()

        from graphwia.trace.kineto import import_kineto

        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        start = time.perf_counter()
        trace, report = import_kineto(directory, workers=args.workers)
        seconds = time.perf_counter() - start
        print(
            f"import_kineto, {args.workers} worker(s): {seconds:.2f} s for {total_mb:.0f} MB = "
            f"{total_mb / seconds:.0f} MB/s, {total_mb / seconds / args.workers:.0f} MB/s per worker; "
            f"{len(trace.table)} op instances (read {report.seconds['read']:.2f} s, "
            f"assemble {report.seconds['assemble']:.2f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
