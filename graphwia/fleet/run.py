"""Fleet analysis: many jobs, one table of how often stragglers hit and why.

The data path of a fleet run::

    discover_jobs → run_fleet (run_job per job, in parallel) → fleet_table → :func:`graphwia.fleet.report.write_fleet`

:func:`run_job` analyses one job, writes its full outputs under
``DIR/jobs/<name>/`` and, last, a completion marker (``fleet-job.json``,
written atomically) holding the job's :class:`JobRecord` (its fleet row,
typed). A job whose marker exists and matches its current input files is
complete: a re-run reads the marker instead of analysing again, so an
interrupted fleet run resumes where it stopped. Failed jobs get no marker and
are retried by the next run.

A job's name comes from its file name and becomes a folder: it must pass the
name rule (:func:`graphwia.utils.names.check_name`) when the jobs are
discovered, and every file a job writes must lie inside its folder.

Jobs run on local worker processes (:func:`graphwia.fleet.pool.run_isolated`:
a worker that dies, or a job over ``job_timeout``, fails that job only; the
workers end with the parent) or, given a scheduler address, on an existing
dask.distributed cluster whose workers can import graphwia and see the input
and output paths. dask is an optional extra (``graphwia[fleet]``) and imported
only for that.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shlex
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from graphwia.errors import GraphwiaError, UsageError, first_line
from graphwia.fleet.pool import Failure, run_isolated
from graphwia.utils.io import inside, write_json
from graphwia.utils.names import check_name
from graphwia.utils.system import usable_cpus

if TYPE_CHECKING:  # pragma: no cover
    from graphwia.analyses.causes import Causes
    from graphwia.analyses.standard import Analysis

__all__ = [
    "COLUMNS",
    "MARKER",
    "FleetRun",
    "Job",
    "JobRecord",
    "cause_fields",
    "completed_record",
    "discover_jobs",
    "fleet_table",
    "job_dir",
    "job_record",
    "read_fleet_csv",
    "run_fleet",
    "run_job",
    "wasted_gpu_hours",
]

MARKER = "fleet-job.json"
#: 2: the cause columns come from the cause analysis (graphwia.analyses.causes).
#: 3: the marker holds the job's record (its causes as (cause, share) pairs, its page link).
MARKER_VERSION = 3
TRACE_SUFFIXES = (".parquet", ".csv", ".csv.gz")
#: Modules a local worker imports before it takes a job (a job's time limit does not count them).
WARM_UP = ("graphwia.analyses.standard", "graphwia.outputs.job", "graphwia.trace.optable")

#: fleet.csv columns, in order, and their dtypes.
COLUMNS = {
    "name": "string",
    "status": "string",
    "error": "string",
    "S": "float64",
    "launch_slowdown": "float64",
    "Ms": "float64",
    "Mw": "float64",
    "cause": "string",
    "cause_share": "float64",
    "causes": "string",
    "top_optype": "string",
    "top_dp_rank": "Int64",
    "top_stage": "Int64",
    "steps": "Int64",
    "workers": "Int64",
    "gpu_hours": "float64",
    "wasted_gpu_hours": "float64",
}


@dataclass(frozen=True)
class Job:
    """One job of a fleet: its name (the output folder) and its input files."""

    name: str
    trace: Path
    meta: Path | None  # None: a directory of rank traces, which holds its own layout


@dataclass(frozen=True)
class JobRecord:
    """One job's outcome: its fleet.csv row, typed, and what the fleet page shows of it.

    ``status`` is ``ok`` (analysed) or ``failed`` (``error`` says why in one line; the numbers
    are then None). The numbers and ``cause`` … ``wasted_gpu_hours`` are the columns of
    :data:`COLUMNS` of the same names; ``causes`` holds every cause found with its share,
    ranked (empty when none was found), where the csv has them as text. ``link`` is the job's
    page relative to the fleet's output folder (its HTML report, else its folder),
    ``optype_attribution`` the job's S by op type (None when attribution did not run) and
    ``warnings`` what the job's analysis warned about.
    """

    name: str
    status: str
    error: str | None = None
    S: float | None = None  # noqa: N815 (the column's name)
    launch_slowdown: float | None = None
    Ms: float | None = None  # noqa: N815
    Mw: float | None = None  # noqa: N815
    cause: str | None = None
    cause_share: float | None = None
    causes: tuple[tuple[str, float], ...] = ()
    top_optype: str | None = None
    top_dp_rank: int | None = None
    top_stage: int | None = None
    steps: int | None = None
    workers: int | None = None
    gpu_hours: float | None = None
    wasted_gpu_hours: float | None = None
    link: str = ""
    optype_attribution: Mapping[str, float] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict[str, Any]:
        """The fleet.csv row (:data:`COLUMNS`, in order): each column the field of its name, ``causes``
        as text, ``"sequence-length 0.833, stage 0.688"`` (None when none was found)."""
        row = {column: getattr(self, column) for column in COLUMNS}
        row["causes"] = ", ".join(f"{cause} {share:.3f}" for cause, share in self.causes) or None
        return row


@dataclass
class FleetRun:
    """What :func:`run_fleet` did: one :class:`JobRecord` per job, in job order.

    :attr:`jobs` is the fleet table of the records (one row per job), built on first use.
    """

    records: list[JobRecord]
    analysed: list[str]  # jobs run now (including those that failed)
    skipped: list[str]  # jobs already complete from an earlier run

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.records if not r.ok]

    @functools.cached_property
    def jobs(self) -> pd.DataFrame:
        """One row per job, with :data:`COLUMNS` and their dtypes (:func:`fleet_table`), built on first use."""
        return fleet_table(self.records)


# -- discovering jobs ---------------------------------------------------------------------
def discover_jobs(source: str | Path) -> list[Job]:
    """Jobs of a directory of ``trace-NAME.parquet`` + ``meta-NAME.yaml`` pairs, or of a manifest.

    A manifest is a text file with one job per line, ``TRACE [META]`` (shell quoting for
    paths with spaces; relative paths are relative to the manifest; blank lines and
    ``#`` comments are ignored). Without META, ``meta-NAME.yaml`` beside the trace is used.
    A job's name is NAME of ``trace-NAME.<ext>`` (else the file's stem); names must be unique.
    """
    source = Path(source)
    if source.is_dir():
        traces = sorted(
            p for p in source.iterdir() if p.name.startswith("trace-") and p.name.lower().endswith(TRACE_SUFFIXES)
        )
        from graphwia.trace.inputs import is_rank_directory

        traces += sorted(p for p in source.iterdir() if is_rank_directory(p))  # a job per directory of rank traces
        if not traces:
            raise UsageError(f"{source}: no trace-NAME.parquet files or directories of rank traces in this directory")
        jobs = [_job(trace, None, str(trace)) for trace in traces]
    elif source.is_file():
        jobs = _manifest_jobs(source)
    else:
        raise UsageError(f"{source}: no such directory or manifest file")
    _check_unique(jobs, source)
    return jobs


def _manifest_jobs(manifest: Path) -> list[Job]:
    try:
        lines = manifest.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{manifest}: cannot read the manifest ({exc})") from None
    jobs = []
    for number, line in enumerate(lines, start=1):
        try:
            fields = shlex.split(line, comments=True)
        except ValueError as exc:
            raise UsageError(f"{manifest}:{number}: {exc}") from None
        if not fields:
            continue
        if len(fields) > 2:
            raise UsageError(f"{manifest}:{number}: expected 'TRACE [META]', got {len(fields)} fields")
        paths = [p if p.is_absolute() else manifest.parent / p for p in map(Path, fields)]
        jobs.append(_job(paths[0], paths[1] if len(paths) > 1 else None, f"{manifest}:{number}"))
    if not jobs:
        raise UsageError(f"{manifest}: the manifest lists no jobs")
    return jobs


def _job(trace: Path, meta: Path | None, source: str) -> Job:
    """The job of ``trace``; its name (NAME of ``trace-NAME.ext``, else the file's stem) must be a valid name."""
    from graphwia.trace.meta import default_meta_path

    stem = trace.name.split(".")[0]
    name = check_name(stem.removeprefix("trace-") or stem, what="job name (from the trace file name)", source=source)
    return Job(
        name=name, trace=trace.resolve(), meta=None if trace.is_dir() else (meta or default_meta_path(trace)).resolve()
    )


def _check_unique(jobs: list[Job], source: Path) -> None:
    seen: dict[str, Job] = {}
    for job in jobs:
        if job.name in seen:
            raise UsageError(
                f"{source}: two jobs named {job.name!r} ({seen[job.name].trace} and {job.trace}); "
                "job names must be unique"
            )
        seen[job.name] = job


# -- one job -------------------------------------------------------------------------------
def job_dir(out_dir: str | Path, name: str) -> Path:
    """``out_dir/jobs/name``; ``name`` must be a valid name, so the folder lies inside ``out_dir/jobs``."""
    jobs = Path(out_dir) / "jobs"
    return inside(jobs / check_name(name, what="job name", source=str(jobs)), jobs)


def run_job(job: Job, out_dir: str | Path, *, plots: bool = True, time_unit: str | None = None) -> JobRecord:
    """Analyse ``job``, write its outputs and marker; return its record. Never raises for a bad job.

    A failure (bad input, or an unexpected error) is returned as a record with status
    ``failed`` and a one-line error; nothing is marked complete then. ``time_unit``: see
    :func:`graphwia.trace.optable.load_trace`.
    """
    from graphwia.analyses.standard import analyze
    from graphwia.outputs.job import undefined_values, write_outputs
    from graphwia.trace.files import open_trace

    inputs = _input_fingerprint(job)
    try:
        analysis = analyze(open_trace(job.trace, job.meta, time_unit=time_unit))
        directory = job_dir(out_dir, job.name)
        write_outputs(analysis, directory, plots=plots)
        record = job_record(
            job.name,
            analysis,
            link=_job_link(out_dir, job.name),
            warnings=list(analysis.warnings) + undefined_values(analysis),
        )
        write_json(directory / MARKER, _marker(record, inputs, plots))
        return record
    except GraphwiaError as exc:
        return _failed_record(job, str(exc), out_dir)
    except Exception as exc:  # a bug or an unforeseen input must not stop the fleet
        return _failed_record(job, f"unexpected {type(exc).__name__}: {first_line(exc)}", out_dir)


def job_record(name: str, analysis: Analysis, *, link: str = "", warnings: Iterable[str] = ()) -> JobRecord:
    """The record of one analysed job (its fleet.csv row: see :data:`COLUMNS`)."""
    s = float(analysis.slowdown)
    gpu_hours = analysis.meta.world_size * float(analysis.step_time_observed.sum()) / 3600
    top_dp_rank, top_stage = _top(analysis, "dp_rank"), _top(analysis, "stage")
    top_optype = _top(analysis, "optype")
    return JobRecord(
        name=name,
        status="ok",
        S=s,
        launch_slowdown=float(analysis.launch_slowdown),
        Ms=float(analysis.Ms),
        Mw=float(analysis.Mw),
        **cause_fields(analysis.causes),
        top_optype=None if top_optype is None else str(top_optype),
        top_dp_rank=None if top_dp_rank is None else int(top_dp_rank),
        top_stage=None if top_stage is None else int(top_stage),
        steps=len(analysis.steps),
        workers=len(analysis.worker_table),
        gpu_hours=gpu_hours,
        wasted_gpu_hours=wasted_gpu_hours(s, gpu_hours),
        link=link,
        optype_attribution=_overall(analysis, "optype"),
        warnings=tuple(warnings),
    )


def cause_fields(causes: Causes) -> dict[str, Any]:
    """A record's cause fields: ``cause`` (:attr:`Causes.label <graphwia.analyses.causes.Causes.label>`),
    ``cause_share`` (its share; None for ``unexplained`` and ``none``) and ``causes`` (every cause
    found with its share, ranked: ``(("sequence-length", 0.833), ("stage", 0.688))``)."""
    named = causes.named
    return {
        "cause": causes.label,
        "cause_share": named[0].share if named else None,
        "causes": tuple((c.cause, float(c.share)) for c in causes.ranked if c.share is not None),
    }


def wasted_gpu_hours(s: float, gpu_hours: float) -> float:
    """(S − 1)/S of the job's GPU time: what it would have saved without stragglers (≥ 0)."""
    return max(0.0, (s - 1) / s) * gpu_hours if s > 0 else 0.0


def _failed_record(job: Job, error: str, out_dir: str | Path) -> JobRecord:
    return JobRecord(name=job.name, status="failed", error=error, link=_job_link(out_dir, job.name))


def _job_link(out_dir: str | Path, name: str) -> str:
    """The job's page relative to ``out_dir``: its HTML report when it has one, else its folder."""
    try:
        directory = job_dir(out_dir, name)
        reports = sorted(directory.glob("report-*.html"))
    except (OSError, GraphwiaError):  # a failed job's record is made whatever its folder is
        return f"jobs/{name}"
    return (reports[0] if reports else directory).relative_to(out_dir).as_posix()


def _input_fingerprint(job: Job) -> dict:
    """Path, size and mtime of the job's inputs: a changed input makes its marker stale."""

    def stat(path: Path):
        try:
            st = path.stat()
        except OSError:
            return None
        return [str(path), st.st_size, st.st_mtime_ns]

    if job.meta is None:  # a directory of rank traces: each of its files
        from graphwia.trace.inputs import RANK_SUFFIXES

        files = sorted(p for p in job.trace.iterdir() if p.name.endswith(RANK_SUFFIXES)) if job.trace.is_dir() else []
        return {"trace": [stat(p) for p in files], "meta": None}
    return {"trace": stat(job.trace), "meta": stat(job.meta)}


def _marker(record: JobRecord, inputs: dict, plots: bool) -> dict:
    """The content of a job's completion marker: the record and what it was made from."""
    return {"version": MARKER_VERSION, "inputs": inputs, "plots": plots, "record": dataclasses.asdict(record)}


def completed_record(job: Job, out_dir: str | Path, plots: bool) -> JobRecord | None:
    """The job's record if a previous run completed it with the same inputs (and plots if wanted)."""
    import json

    try:
        marker = json.loads((job_dir(out_dir, job.name) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("version") != MARKER_VERSION:
        return None
    if marker.get("inputs") != _input_fingerprint(job) or (plots and not marker.get("plots")):
        return None
    try:
        fields = dict(marker["record"])
        fields["causes"] = tuple((str(cause), float(share)) for cause, share in fields.get("causes", ()))
        fields["warnings"] = tuple(str(w) for w in fields.get("warnings", ()))
        record = JobRecord(**fields)
    except (KeyError, TypeError, ValueError):  # a marker this version did not write: the job is redone
        return None
    return record if record.ok and record.name == job.name else None


# -- many jobs -----------------------------------------------------------------------------
OnDone = Callable[[JobRecord, bool], None]


def run_fleet(
    jobs: Iterable[Job],
    out_dir: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    plots: bool = True,
    job_timeout: float | None = None,
    time_unit: str | None = None,
    on_done: OnDone | None = None,
    on_start: Callable[[Job, int], None] | None = None,
) -> FleetRun:
    """Run every job not yet complete; return all records, in job order.

    Parameters
    ----------
    workers:
        Local worker processes (default: the CPUs this process may use, a container's CPU limit
        included: :func:`~graphwia.utils.system.usable_cpus`; 1 without ``job_timeout`` runs
        the jobs in this process). Ignored when ``scheduler`` is given.
    scheduler:
        Address of a dask.distributed scheduler (``tcp://host:port``) to run the jobs on.
    job_timeout:
        Seconds a job may run on a local worker before it is stopped and recorded as failed
        (None: no limit). Not available with ``scheduler``.
    time_unit:
        Unit of every job's ``start_ts`` and ``duration`` (see :func:`graphwia.trace.optable.load_trace`).
    on_done:
        Called with each job's record as it completes, and whether it was analysed now
        (False: already complete).
    on_start:
        Called with a job and the process id of the local worker that starts it.
    """
    if job_timeout is not None and scheduler:
        raise UsageError("a job time limit needs local workers; a dask cluster does not stop running tasks")
    if job_timeout is not None and not job_timeout > 0:
        raise UsageError(f"the job time limit must be a positive number of seconds, got {job_timeout}")
    jobs = list(jobs)
    out_dir = Path(out_dir).resolve()
    notify = on_done or (lambda record, analysed: None)
    records: dict[str, JobRecord] = {}
    pending = []
    for job in jobs:
        done = completed_record(job, out_dir, plots)
        if done is None:
            pending.append(job)
        else:
            records[job.name] = done
            notify(done, False)
    skipped = [job.name for job in jobs if job.name in records]
    if pending:
        results = (
            _run_dask(pending, out_dir, plots, time_unit, scheduler)
            if scheduler
            else _run_local(pending, out_dir, plots, time_unit, workers or usable_cpus(), job_timeout, on_start)
        )
        for record in results:
            records[record.name] = record
            notify(record, True)
    return FleetRun(
        records=[records[job.name] for job in jobs], analysed=[job.name for job in pending], skipped=skipped
    )


def _run_local(
    jobs: list[Job],
    out_dir: Path,
    plots: bool,
    time_unit: str | None,
    workers: int,
    job_timeout: float | None,
    on_start: Callable[[Job, int], None] | None,
) -> Iterator[JobRecord]:
    if workers <= 1 and job_timeout is None:
        for job in jobs:
            if on_start is not None:
                on_start(job, os.getpid())
            yield run_job(job, out_dir, plots=plots, time_unit=time_unit)
        return
    tasks = [(job, out_dir, plots, time_unit) for job in jobs]
    started = None if on_start is None else (lambda index, pid: on_start(jobs[index], pid))
    for index, result in run_isolated(
        _run_job_task, tasks, workers=workers, timeout=job_timeout, warm_up=WARM_UP, on_start=started
    ):
        yield _failed_record(jobs[index], result.reason, out_dir) if isinstance(result, Failure) else result


def _run_job_task(job: Job, out_dir: Path, plots: bool, time_unit: str | None) -> JobRecord:
    """:func:`run_job` with positional arguments, as a local worker calls it."""
    return run_job(job, out_dir, plots=plots, time_unit=time_unit)


def _run_dask(jobs: list[Job], out_dir: Path, plots: bool, time_unit: str | None, address: str) -> Iterator[JobRecord]:
    from graphwia.utils.cluster import connect

    client = connect(address)
    from distributed import as_completed as dask_completed

    with client:
        tag = uuid.uuid4().hex[:8]
        futures = {
            client.submit(
                run_job,
                job,
                out_dir,
                plots=plots,
                time_unit=time_unit,
                key=f"graphwia-fleet-{job.name}-{tag}",
                pure=False,
                retries=0,
            ): job
            for job in jobs
        }
        try:
            for future in dask_completed(list(futures), loop=client.loop):
                yield _outcome(futures[future], future.result, out_dir)
        finally:
            client.cancel(list(futures))


def _outcome(job: Job, result: Callable[[], JobRecord], out_dir: Path) -> JobRecord:
    """The job's record, or a failed one when its dask worker died (run_job itself never raises)."""
    try:
        return result()
    except Exception as exc:  # KilledWorker, a lost connection, an unpicklable result …
        return _failed_record(job, f"{type(exc).__name__} on the cluster: {first_line(exc)}", out_dir)


# -- the fleet table -----------------------------------------------------------------------
def fleet_table(records: Iterable[JobRecord]) -> pd.DataFrame:
    """One row per job (:meth:`JobRecord.row`) with :data:`COLUMNS` and their dtypes (missing values for
    failed jobs)."""
    table = pd.DataFrame([record.row() for record in records], columns=list(COLUMNS))
    return table.astype(COLUMNS)


def read_fleet_csv(path: str | Path) -> pd.DataFrame:
    """Read a ``fleet.csv`` back with the dtypes it was written with."""
    return pd.read_csv(path, dtype=COLUMNS, keep_default_na=False, na_values=[""])


def _top(analysis, grouping: str):
    """The group of ``grouping`` with the largest attributed slowdown (None: attribution did not run)."""
    parts = analysis.blocking.get(grouping)
    return None if parts is None else max(parts.overall, key=parts.overall.get)


def _overall(analysis, grouping: str) -> dict[str, float] | None:
    """S_G of every group of ``grouping``, as stored in the completion marker."""
    parts = analysis.blocking.get(grouping)
    return None if parts is None else {str(k): float(v) for k, v in parts.overall.items()}
