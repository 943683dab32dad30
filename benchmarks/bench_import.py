"""Benchmark of the Kineto import: MB/s per core and peak memory per worker (issue 12).

Self-contained: writes a synthetic GPU job's per-rank traces (``graphwia.synth.kineto``, about
``--mb`` MB of JSON per rank) into a temporary directory, then measures

1. each file read alone in a fresh worker process (``graphwia.trace.kineto.ranks.read_rank``: decode,
   ops, spans, steps): wall and CPU seconds, MB/s, and the worker's peak RSS;
2. the whole import (``import_kineto``) with ``--workers`` local processes: wall seconds, MB/s in
   all and per worker.

The decoder is compared on the first file: the standard library's ``json`` and msgspec (the
importer's), both with the garbage collector paused as the importer does.

Usage::

    python benchmarks/bench_import.py                    # 8 ranks x ~100 MB, 2 workers
    python benchmarks/bench_import.py --ranks 4 --mb 20  # quicker
"""

from __future__ import annotations

import argparse
import gc
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


def write_job(directory: Path, ranks: int, mb: float) -> list[Path]:
    """A dp 2 x pp (ranks / 2) job, 8 microbatches, 40 kernels per compute, ~mb MB per rank."""
    from graphwia.synth.generate import synthesize
    from graphwia.synth.kineto import write_kineto
    from graphwia.trace.optable import Trace

    steps = max(1, round(mb * 1e6 / BYTES_PER_STEP["per_step"]))
    frame, meta = synthesize(name="bench", dp=2, pp=ranks // 2, microbatches=8, steps=steps, seed=0)
    trace = Trace.from_frame(frame, meta)
    return write_kineto(trace, directory, kernels=BYTES_PER_STEP["kernels"])


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
    return {"file": Path(path).name, "mb": os.path.getsize(path) / 1e6, "seconds": min(walls),
            "cpu_seconds": min(cpus), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def decode_with(path: str, decoder: str) -> dict:
    """CPU seconds and peak RSS of decoding one file with ``json`` or the importer's msgspec decoder."""
    data = Path(path).read_bytes()
    gc.disable()
    start = time.process_time()
    if decoder == "json":
        n = len(json.loads(data)["traceEvents"])
    else:
        from graphwia.trace.kineto.events import _DECODER

        n = len(_DECODER.decode(data).traceEvents)
    seconds = time.process_time() - start
    return {"decoder": decoder, "events": n, "seconds": seconds, "mb_per_s": len(data) / 1e6 / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def fresh(function, *args) -> dict:
    """Run ``function(*args)`` in a new process (its own peak RSS)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=8, help="ranks (even; dp 2 x pp ranks/2)")
    parser.add_argument("--mb", type=float, default=100.0, help="approximate MB of JSON per rank")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes of the whole import")
    parser.add_argument("--repeat", type=int, default=3, help="reads of each file; the best time counts")
    parser.add_argument("--keep", type=Path, help="write the traces here and keep them, or reuse those there "
                                                  "(default: a temporary directory)")
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

        for decoder in ("json", "msgspec"):
            r = fresh(decode_with, str(files[0]), decoder)
            print(f"decode {files[0].name} with {decoder:8s}: {r['seconds']:.2f} s CPU, {r['mb_per_s']:.0f} MB/s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)

        per_file = [fresh(read_one, str(path), args.repeat) for path in files]
        for r in per_file:
            print(f"read_rank {r['file']}: {r['mb']:.0f} MB in {r['seconds']:.2f} s (CPU {r['cpu_seconds']:.2f} s): "
                  f"{r['mb'] / r['cpu_seconds']:.0f} MB/s per core, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
        rates = [r["mb"] / r["cpu_seconds"] for r in per_file]
        print(f"per core (CPU time): {min(rates):.0f}-{max(rates):.0f} MB/s; peak RSS per worker "
              f"{min(r['peak_rss_mb'] for r in per_file):.0f}-{max(r['peak_rss_mb'] for r in per_file):.0f} MB "
              f"for {min(r['mb'] for r in per_file):.0f}-{max(r['mb'] for r in per_file):.0f} MB files")

        from graphwia.trace.kineto import import_kineto

        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        start = time.perf_counter()
        trace, report = import_kineto(directory, workers=args.workers)
        seconds = time.perf_counter() - start
        print(f"import_kineto, {args.workers} worker(s): {seconds:.2f} s for {total_mb:.0f} MB = "
              f"{total_mb / seconds:.0f} MB/s, {total_mb / seconds / args.workers:.0f} MB/s per worker; "
              f"{len(trace.table)} op instances (read {report.seconds['read']:.2f} s, "
              f"assemble {report.seconds['assemble']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
