"""Benchmark harness: time and memory of graphwia's data path against job size (issues 7 and 14).

Every measurement runs in a fresh Python subprocess, so import time and peak memory count
honestly and one job cannot warm the caches of the next. Per job it runs:

* a *synth* child (synthetic jobs only): ``graphwia.synth.generate.synthesize`` + writing the parquet;
* a *phases* child: :func:`measure_phases` -- load, validation, DAG build, observed weights,
  compile, one scenario, a batch of scenarios, then the full ``analyze`` (S, S_t, S_w, M_S, M_W)
  with its own phases taken from the engine's progress labels;
* a *cli* child: the whole process ``graphwia analyze TRACE --out tmp --no-plots --quiet``,
  the number the targets are about; its peak RSS comes from ``os.wait4``;
* for large synthetic jobs, a *cluster* child: the same with ``--workers N`` (local processes);
* for real traces, a *whatif* child (``graphwia whatif`` of :data:`WHATIF_SCENARIOS` scenarios)
  and an *export* child (``graphwia export-dag`` to GraphML).

With ``--repeat N`` each child runs N times and the best (minimum) of every number is kept;
jobs of :data:`REPEAT_LIMIT_OPS` op instances or more run once. Results: a table on stdout,
``OUT/bench.json`` and ``OUT/bench.png`` (time and peak memory against op instances, log-log,
with the slope of log(value) ~ log(ops) over the synthetic jobs in the legend). ``bench.json``
keeps the main figures of every earlier run under ``history`` (commit, date, load), so a
regression shows.

Usage::

    python benchmarks/bench.py --data ../shared/data --out benchmarks/results          # everything
    python benchmarks/bench.py --quick                                                 # real + 1e5
    python benchmarks/bench.py --sizes 1e6 --traces none --profile synth-1e6
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "benchmarks" / "results"
#: The history of every run's main figures, kept in git (results/ is not): a regression shows.
DEFAULT_HISTORY = REPO / "benchmarks" / "history.json"
REAL_TRACES = ("ST", "AR", "SE")
#: Size names accepted by --sizes besides plain numbers such as 5e5.
SIZE_ALIASES = {"small": 1e5}
DEFAULT_SIZES = ("1e5", "1e6", "2e6", "1e7")
QUICK_SIZES = ("1e5",)
#: Shape of every synthetic job; only the number of DP ranks grows with the size, so the
#: per-worker program (and the DAG's depth) is the same at every size.
SYNTH_SHAPE = {"pp": 8, "microbatches": 32, "steps": 20, "seed": 0}
#: Sizes with a shape of their own: the jobs issue 14 names (dp 64 x pp 8 is 1.9e6 ops; dp 128 x
#: pp 16, 2,048 workers, is 1.0e7).
SIZE_SHAPES = {"2e6": dict(SYNTH_SHAPE, dp=64), "1e7": dict(SYNTH_SHAPE, dp=128, pp=16)}
#: Jobs at least this large skip the in-process analysis of the phases child (the CLI child
#: measures it; running it twice costs minutes).
PHASES_ANALYZE_LIMIT_OPS = 5_000_000
#: Synthetic jobs at least this large are also analysed on local worker processes (--cluster).
CLUSTER_MIN_OPS = 1_000_000
#: Scenarios of the what-if child on real traces.
WHATIF_SCENARIOS = 1000
#: Most runs of the what-if and export children (at most --repeat; the best is kept, as for the
#: other children: a single run of a 2-3 s command on this machine varies by up to 40%).
EXTRA_RUNS = 3
#: Scenarios in the batch-evaluation phase (the analysis evaluates families of this order).
DEFAULT_BATCH = 20
#: Jobs this large run once whatever --repeat says (a 2e6-op analysis takes minutes).
REPEAT_LIMIT_OPS = 500_000
DEFAULT_TIMEOUT_S = 3600
#: Memory cap of each child, GB: above the 6 GB target, well below a shared 24 GB machine.
DEFAULT_MEMORY_GB = 10.0

#: Issue 14 targets (issue 7's for ST): job -> [(field, limit, unit)]. Whole process, pictures off.
TARGETS = {
    "ST": [("cli_wall_s", 0.5, "s")],
    "AR": [
        ("cli_wall_s", 0.36, "s"),
        ("whatif_wall_s", 2.0, "s"),
        ("export_wall_s", 3.0, "s"),
        ("export_peak_mb", 500.0, "MB"),
    ],
    "SE": [("cli_wall_s", 0.30, "s")],
    "synth-2e6": [
        ("cli_wall_s", 8.0, "s"),
        ("cli_peak_mb", 2048.0, "MB"),
        ("eval_warm_ns_per_op", 3.0, "ns"),
        ("synth_s", 30.0, "s"),
    ],
    "synth-1e7": [("cli_wall_s", 120.0, "s"), ("cli_peak_mb", 8192.0, "MB")],
}

#: Short names of target fields in the table's verdicts.
SHORT = {
    "cli_wall_s": "wall",
    "cli_peak_mb": "MB",
    "synth_s": "synth",
    "eval_warm_ns_per_op": "ns/op",
    "whatif_wall_s": "whatif",
    "export_wall_s": "export",
    "export_peak_mb": "export MB",
}
#: Fields kept per job in bench.json's history.
HISTORY_FIELDS = (
    "n_ops",
    "load_average_1m",
    "cli_wall_s",
    "cli_peak_mb",
    "cluster_wall_s",
    "analyze_s",
    "eval_warm_ns_per_op",
    "eval_numpy_ns_per_op",
    "eval_compiled_ns_per_op",
    "swap_numpy_ns_per_op",
    "swap_compiled_ns_per_op",
    "kernel_load_s",
    "whatif_wall_s",
    "whatif_peak_mb",
    "export_wall_s",
    "export_peak_mb",
)

#: Table columns: (field, header, format). Times in seconds unless the header says otherwise.
COLUMNS = (
    ("job", "job", "{}"),
    ("n_ops", "ops", "{:,}"),
    ("n_nodes", "nodes", "{:,}"),
    ("n_edges", "edges", "{:,}"),
    ("n_levels", "levels", "{:,}"),
    ("synth_s", "synth", "{:.2f}"),
    ("load_s", "load", "{:.3f}"),
    ("validate_s", "valid.", "{:.3f}"),
    ("build_s", "build", "{:.3f}"),
    ("weights_s", "weights", "{:.3f}"),
    ("compile_s", "compile", "{:.3f}"),
    ("eval1_s", "eval 1", "{:.3f}"),
    ("eval_batch_s", "eval N", "{:.3f}"),
    ("eval_per_scenario_ms", "ms/scen.", "{:.1f}"),
    ("eval_warm_per_scenario_ms", "warm", "{:.1f}"),
    ("eval_numpy_ns_per_op", "np ns", "{:.1f}"),
    ("eval_compiled_ns_per_op", "jit ns", "{:.1f}"),
    ("swap_compiled_ns_per_op", "S_w ns", "{:.2f}"),
    ("analyze_s", "analyze", "{:.2f}"),
    ("analyze_us_per_op", "µs/op", "{:.2f}"),
    ("cli_wall_s", "CLI wall", "{:.2f}"),
    ("cli_peak_mb", "CLI peak MB", "{:,.0f}"),
    ("cluster_wall_s", "cluster", "{:.2f}"),
    ("whatif_wall_s", "whatif", "{:.2f}"),
    ("export_wall_s", "export", "{:.2f}"),
    ("export_peak_mb", "exp. MB", "{:,.0f}"),
    ("targets", "status", "{}"),
)

#: Values plotted against ops: field -> legend name (time panel, then memory panel).
TIME_SERIES = {
    "cli_wall_s": "graphwia analyze (whole process)",
    "analyze_s": "analyze() in process",
    "cluster_wall_s": "graphwia analyze --workers N",
    "synth_s": "synthesize()",
}
MEMORY_SERIES = {
    "cli_peak_mb": "graphwia analyze peak RSS",
    "cluster_peak_mb": "graphwia analyze --workers N peak RSS",
    "phases_peak_mb": "phases child peak RSS",
}


class BenchError(Exception):
    """A benchmark job could not run; the message names the job and the step that failed.

    ``partial`` holds what the failed child measured before it failed.
    """

    def __init__(self, message: str, partial: dict | None = None):
        super().__init__(message)
        self.partial = partial or {}


@dataclass
class Job:
    """One thing to measure: a real trace or a synthetic job written to ``trace_path``."""

    name: str
    trace_path: Path
    meta_path: Path
    synth: dict | None = None  # synthesize() keyword arguments for a synthetic job

    @property
    def kind(self) -> str:
        return "synth" if self.synth else "real"


# ---------------------------------------------------------------------------------------------
# Measurement inside a child process
# ---------------------------------------------------------------------------------------------


@contextmanager
def timer(into: dict, key: str) -> Iterator[None]:
    """Store the wall time of the ``with`` body, in seconds, as ``into[key]``."""
    began = time.perf_counter()
    yield
    into[key] = time.perf_counter() - began


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size so far, in MB (``ru_maxrss`` is KB on Linux, bytes on macOS)."""
    return maxrss_mb(resource.getrusage(who).ru_maxrss)


def maxrss_mb(maxrss: int) -> float:
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


def measure_phases(
    trace_path: str | Path,
    meta_path: str | Path,
    batch: int = DEFAULT_BATCH,
    row: dict | None = None,
    per_worker: bool = True,
) -> dict:
    """Time each stage of the data path on one trace, in this process.

    Returns seconds for ``import_s`` (0 when graphwia is already imported), ``load_s`` (read
    the table and metadata), ``validate_s`` (:meth:`Trace.from_columns`), ``build_s``,
    ``weights_s`` (:func:`observed_weights`), ``compile_s``, ``eval1_s`` (one scenario),
    ``eval_batch_s`` (``batch`` scenarios in one call), ``analyze_s`` (the full
    :func:`graphwia.analyze` with ``per_worker`` (exact S_w, on by default), which rebuilds and recompiles: it is what
    a user pays, timed before the kernel comparison loads the compiled kernel, so with the kernel a fresh
    process picks); ``analyze_phases`` (seconds between the engine's progress labels); the DAG's
    sizes; and peak RSS in MB after the analysis and after the phases.

    The numbers go into ``row`` (a new dict by default) as they are measured, so a caller
    still has the first phases when a later one fails (say, out of memory).
    """
    row = {} if row is None else row
    row["batch"] = batch
    with timer(row, "import_s"):
        import numpy as np

        from graphwia import Trace, analyze, build_dag, observed_weights
        from graphwia.trace.optable import load_meta, read_columns
    with timer(row, "load_s"):
        meta = load_meta(meta_path)
        columns = read_columns(Path(trace_path))
    with timer(row, "validate_s"):
        trace = Trace.from_columns(columns, meta, source=str(trace_path))
    del columns
    with timer(row, "build_s"):
        dag = build_dag(trace)
    with timer(row, "weights_s"):
        weights = observed_weights(dag)
    with timer(row, "compile_s"):
        compiled = dag.compile()
    with timer(row, "eval1_s"):
        compiled.evaluate(weights.weight, weights.delay)
    row.update(
        n_ops=dag.n_ops,
        n_nodes=dag.n_nodes,
        n_edges=len(dag.edges),
        n_levels=compiled.n_levels,
        n_steps=len(dag.steps),
        n_workers=trace.meta.dp_size * trace.meta.pp_size,
    )
    if row["n_ops"] < PHASES_ANALYZE_LIMIT_OPS:
        # Before anything here loads the compiled kernel: "auto" then picks what a fresh
        # `graphwia analyze` process would (the numpy kernel on the real traces).
        labels = LabelClock()
        with timer(row, "analyze_s"):
            analyze(trace, per_worker=per_worker, progress=labels)
        row["analyze_phases"] = labels.durations()
        row["analyze_peak_mb"] = peak_rss_mb()
    many_weights = np.repeat(weights.weight[:, None], batch, axis=1)
    many_delays = np.repeat(weights.delay[:, None], batch, axis=1)
    with timer(row, "eval_batch_s"):
        compiled.evaluate(many_weights, many_delays)
    with timer(row, "eval_warm_s"):  # again, on memory already touched: the engine's own cost
        compiled.evaluate(many_weights, many_delays)
    measure_kernels(compiled, dag, weights, many_weights, many_delays, row)
    row["phases_peak_mb"] = peak_rss_mb()
    return derived(row)


def measure_kernels(compiled, dag, weights, many_weights, many_delays, row: dict) -> dict:
    """The numpy and compiled kernels on the same warm batch, and on the per-worker attribution family.

    Into ``row``: ``kernel_load_s`` (importing numba, loading the cached kernel, planning the
    DAG: what the compiled kernel costs once per process), ``eval_numpy_ns_per_op`` /
    ``eval_compiled_ns_per_op`` (warm, per op instance and scenario, step times only), and
    ``swap_compiled_ns_per_op`` / ``swap_numpy_ns_per_op``: the exact S_w family (one scenario
    per worker; the numpy kernel on at most 16 of them), per op instance and scenario.
    """
    import numpy as np

    from graphwia.engine.scenarios import Swap
    from graphwia.model.weights import ideal_weight, typical_weights

    with timer(row, "kernel_load_s"):  # the first compiled call imports numba and loads the kernel
        compiled.evaluate(weights.weight, weights.delay, kernel="compiled", times=False)
    batch = many_weights.shape[1]
    for kernel in ("numpy", "compiled"):
        compiled.evaluate(many_weights, many_delays, kernel=kernel, times=False)  # touch the memory first
        began = time.perf_counter()
        compiled.evaluate(many_weights, many_delays, kernel=kernel, times=False)
        row[f"eval_{kernel}_ns_per_op"] = 1e9 * (time.perf_counter() - began) / (dag.n_ops * batch)
    codes = dag.table["dp_rank"].astype(np.int64) * dag.meta.pp_size + dag.table["stage"]
    family = Swap(
        ideal_weight(dag, typical_weights(dag, weights)), codes, int(codes.max()) + 1, chosen_weight=weights.weight
    )
    for kernel, part in (("compiled", family), ("numpy", family.part(0, min(16, family.n_scenarios)))):
        began = time.perf_counter()
        compiled.evaluate_family(part, kernel=kernel)
        row[f"swap_{kernel}_ns_per_op"] = 1e9 * (time.perf_counter() - began) / (dag.n_ops * part.n_scenarios)
    return row


class LabelClock:
    """A progress callback that times the stretches between the engine's phase labels."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = [("(before first label)", time.perf_counter())]

    def __call__(self, label: str) -> None:
        self.marks.append((label, time.perf_counter()))

    def durations(self) -> dict[str, float]:
        """Seconds from each label to the next one (the last one to now)."""
        ends = [t for _, t in self.marks[1:]] + [time.perf_counter()]
        spans = {label: end - t for (label, t), end in zip(self.marks, ends)}
        return {label: s for label, s in spans.items() if label != "(before first label)" or s > 1e-3}


def derived(row: dict) -> dict:
    """Add per-scenario and per-op costs to a measured row (in place; also returned)."""
    if row.get("eval_batch_s") is not None and row.get("batch"):
        row["eval_per_scenario_ms"] = 1e3 * row["eval_batch_s"] / row["batch"]
    if row.get("eval_warm_s") is not None and row.get("batch"):
        row["eval_warm_per_scenario_ms"] = 1e3 * row["eval_warm_s"] / row["batch"]
        if row.get("n_ops"):
            row["eval_warm_ns_per_op"] = 1e9 * row["eval_warm_s"] / row["batch"] / row["n_ops"]
    if row.get("analyze_s") is not None and row.get("n_ops"):
        row["analyze_us_per_op"] = 1e6 * row["analyze_s"] / row["n_ops"]
    if row.get("cli_wall_s") is not None and row.get("n_ops"):
        row["cli_us_per_op"] = 1e6 * row["cli_wall_s"] / row["n_ops"]
    return row


def measure_synth(out_dir: str | Path, name: str, synth: dict) -> dict:
    """Time :func:`graphwia.synth.generate.synthesize` and writing its parquet/YAML, in this process."""
    row: dict = {}
    with timer(row, "synth_import_s"):
        from graphwia.synth.generate import synthesize, write_trace_files
    with timer(row, "synth_s"):
        frame, meta = synthesize(name=name, **synth)
    with timer(row, "synth_write_s"):
        write_trace_files(out_dir, name, frame, meta)
    row["synth_rows"] = len(frame)
    row["synth_peak_mb"] = peak_rss_mb()
    return row


def profile_analysis(trace_path: str | Path, meta_path: str | Path, out_path: str | Path, top: int = 40) -> None:
    """cProfile of load + full analysis; the ``top`` entries by cumulative time go to ``out_path``."""
    import cProfile
    import io
    import pstats

    from graphwia import analyze, load_trace
    from graphwia.utils.io import write_text

    profiler = cProfile.Profile()
    profiler.enable()
    analyze(load_trace(trace_path, meta_path), per_worker=True)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
    write_text(out_path, text.getvalue())


#: Exit code of a child that ran out of memory (its partial row is still printed).
OUT_OF_MEMORY = 3


def child_main(argv: list[str]) -> int:
    """Entry of a measurement subprocess: print one JSON object on the last stdout line.

    Returns the exit code: 0, or :data:`OUT_OF_MEMORY` after printing what was measured.
    """
    parser = argparse.ArgumentParser(prog="bench.py --child")
    parser.add_argument("mode", choices=("phases", "synth", "profile"))
    parser.add_argument("--trace")
    parser.add_argument("--meta")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--dir")
    parser.add_argument("--name")
    parser.add_argument("--synth", help="synthesize() keyword arguments as JSON")
    parser.add_argument("--profile-out")
    parser.add_argument("--per-worker", type=int, default=1)
    args = parser.parse_args(argv)
    row: dict = {}
    try:
        if args.mode == "phases":
            measure_phases(args.trace, args.meta, args.batch, row=row, per_worker=bool(args.per_worker))
        elif args.mode == "synth":
            row = measure_synth(args.dir, args.name, json.loads(args.synth))
        else:
            profile_analysis(args.trace, args.meta, args.profile_out)
    except MemoryError:
        row["peak_at_failure_mb"] = peak_rss_mb()
        print(json.dumps(row))
        return OUT_OF_MEMORY
    print(json.dumps(row))
    return 0


# ---------------------------------------------------------------------------------------------
# Running children from the parent
# ---------------------------------------------------------------------------------------------


@dataclass
class ChildRun:
    """A finished subprocess: wall time, peak RSS (MB) from ``os.wait4``, exit code, output."""

    wall_s: float
    peak_mb: float
    code: int
    stdout: str
    stderr: str


def run_child(cmd: list[str], timeout_s: float = DEFAULT_TIMEOUT_S, memory_gb: float = 0) -> ChildRun:
    """Run ``cmd`` to completion; its own rusage gives the peak RSS of that one process.

    Output goes to temporary files (no pipe can fill up); past ``timeout_s`` it is killed.
    ``memory_gb`` > 0 caps the child's address space (so its RSS too): an allocation beyond it
    fails with MemoryError in the child instead of pushing a shared machine into swap or the
    OOM killer.
    """

    def cap_memory() -> None:
        limit = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO, preexec_fn=cap_memory if memory_gb > 0 else None)
        killer = threading.Timer(timeout_s, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return ChildRun(wall, maxrss_mb(usage.ru_maxrss), proc.returncode, out.read(), err.read())


def child_json(run: ChildRun, what: str) -> dict:
    """The JSON object a child printed last; a failed child raises :class:`BenchError`.

    The error says why in one line -- out of memory, killed, or the child's last stderr line --
    and carries whatever the child printed before failing.
    """
    lines = run.stdout.strip().splitlines()
    try:
        row = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        row = {}
    if run.code == 0:
        return row
    stderr = run.stderr.strip()
    if run.code == OUT_OF_MEMORY or "MemoryError" in stderr:
        why = "out of memory (over --memory-limit)"
    elif run.code < 0:
        why = f"killed by signal {-run.code} (--timeout, or the system)"
    else:
        why = f"exit code {run.code}: " + (stderr.splitlines() or ["(no stderr)"])[-1]
    raise BenchError(f"{what}: {why}", partial=row)


def bench_command(mode: str, **options) -> list[str]:
    """This script in child ``mode`` with ``--key value`` options."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode]
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def graphwia_command(trace: Path, meta: Path, out: Path, per_worker: bool = True, *extra: str) -> list[str]:
    """``graphwia analyze`` as a user runs it: the installed script beside this interpreter."""
    return graphwia_script() + [
        "analyze",
        str(trace),
        "--meta",
        str(meta),
        "--out",
        str(out),
        "--no-plots",
        "--quiet",
        "--per-worker" if per_worker else "--no-per-worker",
        *extra,
    ]


def graphwia_script() -> list[str]:
    """How to run the ``graphwia`` command: the installed script beside this interpreter."""
    script = Path(sys.executable).with_name("graphwia")
    return [str(script)] if script.exists() else [sys.executable, "-m", "graphwia.cli.main"]


def write_whatif_scenarios(path: Path, n: int) -> Path:
    """A what-if file of ``n`` distinct scenarios that fit any trace (compute of every stage or the last one)."""
    import yaml

    scenarios = [
        {
            "name": f"s{i}",
            "where": {
                "optype": [("forward-compute", "backward-compute")[i % 2]],
                **({"stage": ["last"]} if i % 3 == 0 else {}),
            },
            "scale": {"duration": round(0.5 + (i + 0.5) / n, 6)},
        }
        for i in range(n)
    ]  # never 1
    path.write_text(yaml.safe_dump({"baseline": "nodelay", "scenarios": scenarios}, sort_keys=False))
    return path


def best_of(rows: list[dict]) -> dict:
    """Per field, the minimum over repeated runs (numbers), else the first run's value."""
    best = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            best[key] = min(r[key] for r in rows)
        elif isinstance(value, dict):
            best[key] = best_of([r[key] for r in rows])
    return best


@dataclass
class Limits:
    """How to run a job's children: ``repeat`` runs, ``timeout_s`` each, ``memory_gb`` (0: no cap),
    whether the analysis computes the exact per-worker S_w (``per_worker``), the local workers of
    the cluster child (``cluster``) and whether real traces get what-if and export children."""

    repeat: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_gb: float = 0
    per_worker: bool = True
    cluster: int = 2  # local worker processes of the cluster child (0: none)
    extras: bool = True  # what-if and export-dag children on real traces


def run_job(job: Job, work: Path, limits: Limits, batch: int, say) -> dict:
    """Measure one job (synth, phases, whole-process CLI); return its table row.

    A failing child does not stop the benchmark: the row keeps what was measured, ``error``
    says what failed, and the status column shows FAIL.
    """
    # other processes on the machine inflate wall times: keep the 1-minute load with the row
    row: dict = {"job": job.name, "kind": job.kind, "load_average_1m": os.getloadavg()[0]}
    try:
        _measure_job(job, work, limits, batch, say, row)
    except BenchError as exc:
        say(f"{job.name}: FAILED: {exc}")
        row.update({k: v for k, v in exc.partial.items() if k not in row})
        row["error"] = str(exc)
    row["targets"] = target_verdict(job.name, row)
    return derived(row)


def _measure_job(job: Job, work: Path, limits: Limits, batch: int, say, row: dict) -> None:
    """Fill ``row`` with the synth, phases and CLI measurements of ``job`` (best of the runs)."""

    def child(cmd: list[str], what: str) -> tuple[dict, ChildRun]:
        run = run_child(cmd, limits.timeout_s, limits.memory_gb)
        try:
            return child_json(run, f"{job.name} {what}"), run
        except BenchError as exc:  # how far it got
            exc.partial.update(failed_child_wall_s=run.wall_s, failed_child_peak_mb=run.peak_mb)
            raise

    if job.synth:
        say(f"{job.name}: synthesizing {job.synth}")
        measured, run = child(bench_command("synth", dir=work, name=job.name, synth=json.dumps(job.synth)), "synth")
        row.update(measured, synth_child_wall_s=run.wall_s)
    runs = limits.repeat if row.get("synth_rows", 0) < REPEAT_LIMIT_OPS else 1
    row["runs"] = runs
    phases, cli = [], []
    for i in range(runs):
        say(f"{job.name}: phases run {i + 1}/{runs}")
        measured, run = child(
            bench_command(
                "phases", trace=job.trace_path, meta=job.meta_path, batch=batch, per_worker=int(limits.per_worker)
            ),
            "phases",
        )
        phases.append(dict(measured, phases_child_wall_s=run.wall_s, phases_child_peak_mb=run.peak_mb))
        row.update(best_of(phases))  # kept if a later child fails
        say(f"{job.name}: graphwia analyze run {i + 1}/{runs}")
        with tempfile.TemporaryDirectory(dir=work) as out:
            _, run = child(
                graphwia_command(job.trace_path, job.meta_path, Path(out), limits.per_worker), "graphwia analyze"
            )
        cli.append({"cli_wall_s": run.wall_s, "cli_peak_mb": run.peak_mb})
        row.update(best_of(cli))
    if job.synth and limits.cluster and row.get("synth_rows", 0) >= CLUSTER_MIN_OPS:
        say(f"{job.name}: graphwia analyze --workers {limits.cluster}")
        with tempfile.TemporaryDirectory(dir=work) as out:
            _, run = child(
                graphwia_command(
                    job.trace_path, job.meta_path, Path(out), limits.per_worker, "--workers", str(limits.cluster)
                ),
                "graphwia analyze --workers",
            )
        row.update(cluster_wall_s=run.wall_s, cluster_peak_mb=run.peak_mb, cluster_workers=limits.cluster)
    if not job.synth and limits.extras:
        scenarios = write_whatif_scenarios(work / f"whatif-{job.name}.yaml", WHATIF_SCENARIOS)
        extras = []
        extra_runs = min(runs, EXTRA_RUNS)
        for i in range(extra_runs):
            say(f"{job.name}: graphwia whatif of {WHATIF_SCENARIOS} scenarios, run {i + 1}/{extra_runs}")
            _, whatif = child(
                graphwia_script()
                + [
                    "whatif",
                    str(job.trace_path),
                    "--meta",
                    str(job.meta_path),
                    "--scenarios",
                    str(scenarios),
                    "--json",
                ],
                "graphwia whatif",
            )
            say(f"{job.name}: graphwia export-dag to GraphML, run {i + 1}/{extra_runs}")
            with tempfile.TemporaryDirectory(dir=work) as out:
                _, export = child(
                    graphwia_script()
                    + [
                        "export-dag",
                        str(job.trace_path),
                        "--meta",
                        str(job.meta_path),
                        "--out",
                        str(Path(out) / "dag.graphml"),
                        "--quiet",
                    ],
                    "graphwia export-dag",
                )
            extras.append(
                {
                    "whatif_wall_s": whatif.wall_s,
                    "whatif_peak_mb": whatif.peak_mb,
                    "export_wall_s": export.wall_s,
                    "export_peak_mb": export.peak_mb,
                }
            )
            row.update(best_of(extras))


def target_verdict(name: str, row: dict) -> str:
    """ "ok", or "MISS" with each missed target as value>limit, for this job's targets (:data:`TARGETS`).

    "" when the job has no target; "FAIL why" when a child failed.
    """
    if row.get("error"):
        return "FAIL " + row["error"].split(": ", 1)[-1]
    targets = TARGETS.get(name, [])
    misses = [
        f"{SHORT.get(key, key)} {row[key]:.3g}>{limit:g}"
        for key, limit, _ in targets
        if row.get(key) is not None and row[key] > limit
    ]
    if not targets:
        return ""
    return "MISS " + ", ".join(misses) if misses else "ok"


# ---------------------------------------------------------------------------------------------
# Jobs, fits, outputs
# ---------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[float]:
    """``"small,1e6,2e6"`` → op-instance counts; ``""`` or ``"none"`` → none."""
    sizes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part == "none":
            continue
        try:
            value = SIZE_ALIASES[part] if part in SIZE_ALIASES else float(part)
        except ValueError:
            raise BenchError(
                f"--sizes: {part!r} is not a number of op instances (e.g. 1e6) or one of {', '.join(SIZE_ALIASES)}"
            ) from None
        if not value >= 1:
            raise BenchError(f"--sizes: {part!r} must be at least 1 op instance")
        sizes.append(value)
    return sizes


def size_name(ops: float) -> str:
    """1e6 → "1e6", 2e6 → "2e6", 150000 → "1.5e5"."""
    exponent = int(math.floor(math.log10(ops)))
    mantissa = ops / 10**exponent
    return f"{mantissa:g}e{exponent}"


def synth_jobs(sizes: list[float], work: Path) -> list[Job]:
    """A synthetic job of about each size: :data:`SYNTH_SHAPE` with as many DP ranks as it takes."""
    if not sizes:
        return []
    from graphwia.synth.generate import synthesize

    # DP ranks are the size knob; count a 2-rank job so the DP collectives are in the rate.
    per_dp_rank = len(synthesize(dp=2, **SYNTH_SHAPE)[0]) / 2
    jobs = []
    for ops in sizes:
        name = f"synth-{size_name(ops)}"
        synth = dict(SYNTH_SHAPE, dp=max(1, round(ops / per_dp_rank)))
        if size_name(ops) in SIZE_SHAPES:
            synth = dict(SIZE_SHAPES[size_name(ops)])
        elif ops < per_dp_rank:  # smaller than one DP rank: fewer steps instead
            synth["steps"] = max(1, round(SYNTH_SHAPE["steps"] * ops / per_dp_rank))
        jobs.append(Job(name, work / f"trace-{name}.parquet", work / f"meta-{name}.yaml", synth=synth))
    return jobs


def real_jobs(data: Path, names: list[str]) -> list[Job]:
    """The published traces ``names`` found in ``data``; missing ones are an error."""
    jobs = []
    for name in names:
        trace, meta = data / f"trace-{name}.parquet", data / f"meta-{name}.yaml"
        if not trace.is_file() or not meta.is_file():
            raise BenchError(f"--traces: {trace} or {meta} not found (point --data at shared/data)")
        jobs.append(Job(name, trace, meta))
    return jobs


def loglog_slope(ops: list[float], values: list[float]) -> float | None:
    """Slope b of log(value) = a + b·log(ops) by least squares; None with fewer than 2 sizes.

    b ≈ 1: cost per op instance constant; b > 1: it grows with the job.
    """
    import numpy as np

    points = [(o, v) for o, v in zip(ops, values) if o and v and o > 0 and v > 0]
    if len({o for o, _ in points}) < 2:
        return None
    x, y = np.log([o for o, _ in points]), np.log([v for _, v in points])
    return float(np.polyfit(x, y, 1)[0])


def fits(rows: list[dict]) -> dict:
    """log-log slopes of every plotted series over the synthetic jobs (all jobs if < 2 synthetic)."""
    synthetic = [r for r in rows if r.get("kind") == "synth"]
    basis = synthetic if len(synthetic) >= 2 else rows
    slopes = {
        key: loglog_slope([r.get("n_ops") for r in basis], [r.get(key) for r in basis])
        for key in (
            *TIME_SERIES,
            *MEMORY_SERIES,
            "eval_per_scenario_ms",
            "eval_warm_per_scenario_ms",
            "eval_numpy_ns_per_op",
            "eval_compiled_ns_per_op",
            "swap_compiled_ns_per_op",
        )
    }
    return {"over": "synthetic jobs" if basis is synthetic else "all jobs", "slopes": slopes}


def machine() -> dict:
    """What the numbers were measured on."""
    import numba
    import numpy
    import pandas

    import graphwia

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "numba": numba.__version__,
        "graphwia": graphwia.__version__,
        "commit": git("rev-parse", "--short", "HEAD") or None,
        # the engine may be measured with uncommitted edits: say so
        "engine_dirty": bool(git("status", "--porcelain", "--", "graphwia", "cli")),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def format_cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    return "–" if value is None or value == "" else fmt.format(value)


def print_table(rows: list[dict], fit: dict) -> None:
    """The table (rich when on a terminal or not), then the slopes."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="graphwia benchmark (seconds unless noted; best of the runs)")
    for key, header, _ in COLUMNS:
        table.add_column(header, justify="left" if key in ("job", "targets") else "right")
    for row in rows:
        table.add_row(*(format_cell(row, key, fmt) for key, _, fmt in COLUMNS))
    console = Console() if sys.stdout.isatty() else Console(width=320)  # a file keeps whole rows
    console.print(table)
    slopes = ", ".join(f"{k} {v:.2f}" for k, v in fit["slopes"].items() if v is not None)
    console.print(f"log-log slope vs ops over {fit['over']} (1 = constant cost per op): {slopes or '–'}")


def write_plot(path: Path, rows: list[dict], fit: dict) -> Path:
    """Time and peak memory against ops, log-log; synthetic jobs joined, real traces labelled."""
    from matplotlib.figure import Figure

    from graphwia.outputs.heatmap import figure_png, write_png

    fig = Figure(figsize=(12, 4.8), dpi=110)
    axes = fig.subplots(1, 2)
    for ax, series, ylabel in ((axes[0], TIME_SERIES, "seconds"), (axes[1], MEMORY_SERIES, "peak RSS (MB)")):
        for key, label in series.items():
            slope = fit["slopes"].get(key)
            basis = "" if fit["over"] == "synthetic jobs" else ", all jobs"
            _plot_series(ax, rows, key, f"{label} (slope {slope:.2f}{basis})" if slope is not None else label)
        _plot_targets(ax, rows, series)
        ax.set(xscale="log", yscale="log", xlabel="op instances", ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("time against job size")
    axes[1].set_title("peak memory against job size")
    fig.tight_layout()
    return write_png(path, figure_png(fig))


def _plot_series(ax, rows: list[dict], key: str, legend: str) -> None:
    synthetic = sorted(
        (r for r in rows if r.get("kind") == "synth" and r.get(key) and r.get("n_ops")), key=lambda r: r["n_ops"]
    )
    real = [r for r in rows if r.get("kind") == "real" and r.get(key) and r.get("n_ops")]
    (line,) = ax.plot([r["n_ops"] for r in synthetic], [r[key] for r in synthetic], "o-", label=legend)
    if real:
        ax.plot([r["n_ops"] for r in real], [r[key] for r in real], "s", color=line.get_color(), mfc="none")
        for r in real:
            ax.annotate(r["job"], (r["n_ops"], r[key]), fontsize=7, xytext=(3, 3), textcoords="offset points")


def _plot_targets(ax, rows: list[dict], series: dict) -> None:
    """A red x at each target of the plotted fields, at the job's size."""
    points = [
        (row["n_ops"], limit)
        for row in rows
        if row.get("n_ops")
        for key, limit, _ in TARGETS.get(row["job"], [])
        if key in series
    ]
    if points:
        ax.plot(*zip(*points), "x", color="red", markersize=8, label="targets")


def history(previous: dict | None, current: dict) -> list[dict]:
    """The runs of an earlier ``bench.json`` (``previous``; None: none) and then ``current``'s, one entry each.

    An entry keeps the commit, date, load and :data:`HISTORY_FIELDS` of every job.
    """

    def entry(report: dict) -> dict:
        machine_info = report.get("machine", {})
        return {
            "commit": machine_info.get("commit"),
            "engine_dirty": machine_info.get("engine_dirty"),
            "date": machine_info.get("date"),
            "load_average": machine_info.get("load_average"),
            "jobs": {
                row["job"]: {k: row[k] for k in HISTORY_FIELDS if row.get(k) is not None}
                for row in report.get("jobs", [])
            },
        }

    runs = []
    if isinstance(previous, dict):
        runs = list(previous.get("history") or ([entry(previous)] if previous.get("jobs") else []))
    return runs + [entry(current)]


def write_outputs(out: Path, rows: list[dict], fit: dict, args: argparse.Namespace) -> list[Path]:
    """``bench.json`` (with the history of earlier runs found there) and ``bench.png`` in ``out``, atomically."""
    from graphwia.utils.io import check_writable_dir, write_json

    check_writable_dir(out)
    report = {
        "machine": machine(),
        "options": {
            "repeat": args.repeat,
            "batch": args.batch,
            "memory_limit_gb": args.memory_limit,
            "synth_shape": SYNTH_SHAPE,
            "size_shapes": SIZE_SHAPES,
            "per_worker": not args.no_per_worker,
            "cluster_workers": args.cluster,
        },
        "targets": {job: [{"field": f, "limit": lim, "unit": u} for f, lim, u in t] for job, t in TARGETS.items()},
        "fit": fit,
        "jobs": rows,
    }
    previous = None
    for source in (args.history, out / "bench.json"):  # the kept history first
        try:
            previous = json.loads(Path(source).read_text()) if source else None
        except (OSError, ValueError):
            continue
        if previous is not None:
            break
    report["history"] = history(previous, report)
    paths = [write_json(out / "bench.json", report)]
    if args.history:
        paths.append(write_json(args.history, {"history": report["history"]}))
    if not args.no_plot:
        paths.append(write_plot(out / "bench.png", rows, fit))
    return paths


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory of the real traces")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where bench.json and bench.png go")
    parser.add_argument(
        "--sizes",
        default=",".join(DEFAULT_SIZES),
        help="synthetic job sizes in op instances, e.g. small,1e6,2e6 ('none' for none)",
    )
    parser.add_argument("--traces", default=",".join(REAL_TRACES), help="real traces to time, or 'none'")
    parser.add_argument("--quick", action="store_true", help="real traces and the 1e5 job only")
    parser.add_argument(
        "--repeat", type=int, default=3, help=f"runs per job, best kept (jobs of >= {REPEAT_LIMIT_OPS:,} ops run once)"
    )
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="scenarios in the batch-evaluation phase")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per child process")
    parser.add_argument(
        "--memory-limit",
        type=float,
        default=DEFAULT_MEMORY_GB,
        metavar="GB",
        help="address-space cap of every child; a job over it is reported as FAIL (0: no cap)",
    )
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="JOB",
        help="also write OUT/profile-JOB.txt (cProfile of load + analyze, by cumtime)",
    )
    parser.add_argument(
        "--no-per-worker",
        action="store_true",
        help="analyse without the exact per-worker S_w (dp x pp extra scenarios); a diagnostic, "
        "the targets are with it",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip bench.png")
    parser.add_argument(
        "--cluster",
        type=int,
        default=2,
        metavar="N",
        help=f"also analyse synthetic jobs of >= {CLUSTER_MIN_OPS:,} ops on N local worker processes (0: not)",
    )
    parser.add_argument(
        "--history",
        type=Path,
        default=DEFAULT_HISTORY,
        help="JSON file of every run's main figures, appended to (kept in git); '' for none",
    )
    parser.add_argument(
        "--no-extras",
        action="store_true",
        help=f"skip the what-if ({WHATIF_SCENARIOS} scenarios) and export-dag children of real traces",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.batch < 1:
        parser.error("--repeat and --batch must be at least 1")
    if args.memory_limit < 0 or args.timeout <= 0 or args.cluster < 0:
        parser.error("--memory-limit and --cluster must be >= 0 and --timeout > 0")
    if args.quick:
        args.sizes = ",".join(QUICK_SIZES)
    args.data, args.out = args.data.resolve(), args.out.resolve()  # children run in the repo root
    args.history = args.history.resolve() if str(args.history) else None
    return args


def selected_jobs(args: argparse.Namespace, work: Path) -> list[Job]:
    names = [n.strip() for n in args.traces.split(",") if n.strip() and n.strip() != "none"]
    return real_jobs(args.data, names) + synth_jobs(parse_sizes(args.sizes), work)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    args = parse_args(argv)
    limits = Limits(
        repeat=args.repeat,
        timeout_s=args.timeout,
        memory_gb=args.memory_limit,
        per_worker=not args.no_per_worker,
        cluster=args.cluster,
        extras=not args.no_extras,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="graphwia-bench-") as tmp:
            work = Path(tmp)
            jobs = selected_jobs(args, work)
            if not jobs:
                raise BenchError("nothing to measure: --traces none and --sizes none")
            rows = [run_job(job, work, limits, args.batch, say) for job in jobs]
            for name in args.profile:
                profile_job(name, jobs, args.out, limits)
        fit = fits(rows)
        print_table(rows, fit)
        for path in write_outputs(args.out, rows, fit, args):
            say(f"wrote {path}")
    except BenchError as exc:
        print(f"bench.py: error: {exc}", file=sys.stderr)
        return 2
    failed = [row["job"] for row in rows if row.get("error")]
    if failed:
        print(
            f"bench.py: error: {len(failed)} job(s) failed: {', '.join(failed)} (see the status column)",
            file=sys.stderr,
        )
        return 1
    return 0


def profile_job(name: str, jobs: list[Job], out: Path, limits: Limits) -> Path:
    """cProfile one measured job (its trace still exists in the work directory)."""
    job = next((j for j in jobs if j.name == name), None)
    if job is None:
        raise BenchError(f"--profile: no job named {name!r}; jobs: {', '.join(j.name for j in jobs)}")
    path = out / f"profile-{name}.txt"
    say(f"{name}: profiling load + analyze")
    run = run_child(
        bench_command("profile", trace=job.trace_path, meta=job.meta_path, profile_out=path),
        limits.timeout_s,
        limits.memory_gb,
    )
    child_json(run, f"{name} profile")
    return path


if __name__ == "__main__":
    sys.exit(main())
