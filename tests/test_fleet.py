"""Fleet analysis: job discovery, local and dask runs, resume, the fleet table and page."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, TRACES, has_data, real_analysis, requires_data
from typer.testing import CliRunner

from graphwia import analyze, load_trace
from graphwia.errors import UsageError
from graphwia.fleet.report import write_fleet
from graphwia.fleet.run import (
    COLUMNS,
    MARKER,
    Job,
    JobRecord,
    cause_fields,
    completed_record,
    discover_jobs,
    fleet_table,
    job_dir,
    read_fleet_csv,
    run_fleet,
    wasted_gpu_hours,
)
from graphwia.synth.generate import write_synth

#: Synthetic jobs with a known cause (graphwia.synth) and the cause the fleet must report.
SYNTH = {
    "worker": (dict(dp=4, pp=2, microbatches=4, steps=3, slow_workers=[(2, 0, 1.8)]), "worker"),
    "stage": (dict(dp=2, pp=4, microbatches=4, steps=3, slow_stage=(3, 1.6)), "stage"),
    "gcpause": (dict(dp=4, pp=2, microbatches=4, steps=4, gc_pauses=[(0.3, 0.5)]), "gc"),
    "clean": (dict(dp=2, pp=2, microbatches=4, steps=3), "none"),
}
REAL_CAUSE = {"ST": "stage", "SE": "sequence-length", "AR": "worker"}


def make_fleet(directory, real: bool = True) -> None:
    """Synthetic jobs, the real traces (linked, when present) and one job without metadata."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, (kw, _) in SYNTH.items():
        write_synth(directory, name, seed=3, **kw)
    if real and has_data():
        for name in TRACES:
            for kind, ext in (("trace", "parquet"), ("meta", "yaml")):
                os.symlink(DATA / f"{kind}-{name}.{ext}", directory / f"{kind}-{name}.{ext}")
    shutil.copy(directory / "trace-clean.parquet", directory / "trace-broken.parquet")


def files_of(out, name) -> dict[str, int]:
    """mtime of every file of a job's output folder."""
    return {p.name: p.stat().st_mtime_ns for p in job_dir(out, name).iterdir()}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The same fleet run on local worker processes and on a dask LocalCluster."""
    distributed = pytest.importorskip("distributed")
    root = tmp_path_factory.mktemp("fleet")
    make_fleet(root / "in")
    jobs = discover_jobs(root / "in")
    local = run_fleet(jobs, root / "local", workers=2, plots=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        on_dask = run_fleet(jobs, root / "dask", scheduler=cluster.scheduler_address, plots=False)
    return {"root": root, "jobs": jobs, "local": local, "dask": on_dask}


# -- discovery -----------------------------------------------------------------------------
def test_directory_jobs_are_trace_meta_pairs_by_name(tmp_path):
    make_fleet(tmp_path, real=False)
    (tmp_path / "notes.txt").write_text("not a job")
    jobs = discover_jobs(tmp_path)
    assert [j.name for j in jobs] == sorted(list(SYNTH) + ["broken"])
    stage = next(j for j in jobs if j.name == "stage")
    assert stage.trace == (tmp_path / "trace-stage.parquet").resolve()
    assert stage.meta == (tmp_path / "meta-stage.yaml").resolve()


def test_manifest_lists_traces_with_optional_meta(tmp_path):
    make_fleet(tmp_path / "data", real=False)
    shutil.copy(tmp_path / "data" / "meta-clean.yaml", tmp_path / "data" / "clean meta.yaml")
    manifest = tmp_path / "fleet.txt"
    manifest.write_text(
        "# my jobs\n\ndata/trace-stage.parquet\n"
        f"{tmp_path / 'data' / 'trace-clean.parquet'} 'data/clean meta.yaml'  # quoted\n"
    )
    jobs = discover_jobs(manifest)
    assert jobs == [
        Job("stage", (tmp_path / "data/trace-stage.parquet").resolve(), (tmp_path / "data/meta-stage.yaml").resolve()),
        Job("clean", (tmp_path / "data/trace-clean.parquet").resolve(), (tmp_path / "data/clean meta.yaml").resolve()),
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ("a.parquet b.yaml c\n", "fleet.txt:1: expected 'TRACE [META]'"),
        ("# nothing\n", "lists no jobs"),
        ("x/trace-a.parquet\ny/trace-a.parquet\n", "two jobs named 'a'"),
        ("'unclosed\n", "fleet.txt:1:"),
    ],
)
def test_bad_manifest_is_a_one_line_usage_error(tmp_path, content, message):
    (tmp_path / "fleet.txt").write_text(content)
    with pytest.raises(UsageError, match=re.escape(message)) as error:
        discover_jobs(tmp_path / "fleet.txt")
    assert "\n" not in str(error.value)


def test_input_without_jobs_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no trace-NAME.parquet"):
        discover_jobs(tmp_path)
    with pytest.raises(UsageError, match="no such directory or manifest"):
        discover_jobs(tmp_path / "missing")


# -- rows ----------------------------------------------------------------------------------
def test_cause_fields_rows_and_wasted_hours():
    from graphwia.analyses.causes import Cause, Causes

    ranked = (Cause("sequence-length", 0.83256), Cause("stage", 0.688))
    fields = cause_fields(Causes(1.5, ranked, ()))
    assert fields == {
        "cause": "sequence-length",
        "cause_share": 0.83256,
        "causes": (("sequence-length", 0.83256), ("stage", 0.688)),
    }
    row = JobRecord("a", "ok", **fields).row()
    assert list(row) == list(COLUMNS)
    assert row["causes"] == "sequence-length 0.833, stage 0.688"  # the csv has them as text
    assert cause_fields(Causes(1.5, (Cause("gc", 0.1),), ()))["cause"] == "unexplained"
    none = cause_fields(Causes(1.05, (), ()))
    assert none == {"cause": "none", "cause_share": None, "causes": ()}
    assert JobRecord("a", "ok", **none).row()["causes"] is None
    assert wasted_gpu_hours(2.0, 10.0) == 5.0
    assert wasted_gpu_hours(0.98, 10.0) == 0.0


def test_local_and_dask_runs_give_identical_rows(fleet):
    local, on_dask = fleet["local"].jobs, fleet["dask"].jobs
    assert list(local.columns) == list(COLUMNS)
    assert list(local["name"]) == [j.name for j in fleet["jobs"]]
    pd.testing.assert_frame_equal(local, on_dask, check_exact=True)
    assert fleet["local"].records == fleet["dask"].records


def test_rows_equal_single_job_analyses_and_known_causes(fleet):
    rows = fleet["local"].jobs.set_index("name")
    for job in fleet["jobs"]:
        if job.name not in SYNTH:
            continue
        analysis = analyze(load_trace(job.trace, job.meta))
        row = rows.loc[job.name]
        assert row["S"] == analysis.slowdown
        assert row["launch_slowdown"] == analysis.launch_slowdown
        assert (row["Ms"], row["Mw"]) == (analysis.Ms, analysis.Mw)
        assert row["cause"] == SYNTH[job.name][1], job.name
        assert row["steps"] == len(analysis.steps) and row["workers"] == len(analysis.workers)
        gpu_hours = analysis.trace.meta.world_size * sum(analysis.step_time_observed) / 3600
        assert row["gpu_hours"] == pytest.approx(gpu_hours, rel=1e-12)
        assert row["wasted_gpu_hours"] == pytest.approx(max(0, (row["S"] - 1) / row["S"]) * gpu_hours, rel=1e-12)
    assert rows.loc["gcpause", "top_optype"] == "gc"
    assert rows.loc["worker", ["top_dp_rank", "top_stage"]].tolist() == [2, 0]
    assert rows.loc["stage", "top_stage"] == 3
    assert pd.isna(rows.loc["clean", "top_optype"])  # S below the attribution threshold


def test_records_are_typed_and_the_marker_holds_them(fleet):
    records = {r.name: r for r in fleet["local"].records}
    stage = records["stage"]
    assert stage.ok and stage.cause == "stage" and stage.link == "jobs/stage"  # no report without plots
    assert stage.causes[0][0] == "stage" and all(isinstance(share, float) for _, share in stage.causes)
    assert stage.row()["causes"] == ", ".join(f"{cause} {share:.3f}" for cause, share in stage.causes)
    assert stage.top_stage == 3 and isinstance(stage.top_dp_rank, int)
    assert stage.optype_attribution and records["clean"].optype_attribution is None
    broken = records["broken"]
    assert not broken.ok and broken.S is None and broken.causes == () and broken.link == "jobs/broken"
    job = next(j for j in fleet["jobs"] if j.name == "stage")
    assert completed_record(job, fleet["root"] / "local", plots=False) == stage
    run = fleet["local"]
    assert run.jobs is run.jobs  # a view built once


@requires_data
def test_real_trace_rows_equal_analyze(fleet):
    rows = fleet["dask"].jobs.set_index("name")
    for name in TRACES:
        analysis = real_analysis(name)
        assert rows.loc[name, "S"] == analysis.slowdown
        assert rows.loc[name, "Mw"] == analysis.Mw
        assert rows.loc[name, "cause"] == REAL_CAUSE[name]
        assert rows.loc[name, "top_optype"] == analysis.blocking["optype"].top(1)[0][0]
    assert rows.loc["AR", ["top_dp_rank", "top_stage"]].tolist() == [0, 0]  # the slowed worker


def test_failed_job_is_recorded_and_does_not_stop_the_others(fleet):
    for run in (fleet["local"], fleet["dask"]):
        table = run.jobs.set_index("name")
        assert run.failed == ["broken"]
        assert "meta-broken.yaml: metadata file not found" in table.loc["broken", "error"]
        assert table.loc["broken", "status"] == "failed" and pd.isna(table.loc["broken", "S"])
        assert (table.drop(index="broken")["status"] == "ok").all()
        assert pd.isna(table.drop(index="broken")["error"]).all()
    assert not (job_dir(fleet["root"] / "local", "broken") / MARKER).exists()


def test_job_outputs_and_fleet_files(fleet):
    out = fleet["root"] / "local"
    run = fleet["local"]
    assert {"result-stage.json", "ms-stage.json", "mw-stage.json", MARKER} <= set(files_of(out, "stage"))
    paths = write_fleet(run, out)
    table = run.jobs
    pd.testing.assert_frame_equal(read_fleet_csv(paths["csv"]), table, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["parquet"]).astype(COLUMNS), table, check_exact=True)
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 4
    for heading in ("CDF of the slowdown S", "wasted GPU hours", "causes", "attribution of S by op type"):
        assert heading in page
    assert "metadata file not found" in page and 'href="jobs/stage"' in page


# -- resume --------------------------------------------------------------------------------
def test_resumed_run_does_no_work_twice(tmp_path, monkeypatch):
    """Count analyses with a hook (jobs run in this process with workers=1) and check file mtimes."""
    import graphwia.analyses.standard

    make_fleet(tmp_path / "in", real=False)
    jobs = discover_jobs(tmp_path / "in")
    out = tmp_path / "out"
    analysed: list[str] = []
    real = graphwia.analyses.standard.analyze

    def counting(trace, **kw):
        analysed.append(trace.meta.trial_name)
        return real(trace, **kw)

    monkeypatch.setattr(graphwia.analyses.standard, "analyze", counting)
    first = run_fleet(jobs, out, workers=1, plots=False)
    assert sorted(analysed) == sorted(SYNTH) and first.failed == ["broken"]
    before = {name: files_of(out, name) for name in SYNTH}

    analysed.clear()
    seen = []
    again = run_fleet(jobs, out, workers=1, plots=False, on_done=lambda record, now: seen.append((record.name, now)))
    assert analysed == [] and again.analysed == ["broken"] and sorted(again.skipped) == sorted(SYNTH)
    assert sorted(seen) == sorted([(n, False) for n in SYNTH] + [("broken", True)])
    assert {name: files_of(out, name) for name in SYNTH} == before
    pd.testing.assert_frame_equal(again.jobs, first.jobs, check_exact=True)
    assert again.records == first.records  # a marker holds the whole record

    # an interrupted run leaves a job without its marker; a repaired input is retried
    (job_dir(out, "stage") / MARKER).unlink()
    shutil.copy(tmp_path / "in" / "meta-clean.yaml", tmp_path / "in" / "meta-broken.yaml")
    analysed.clear()
    third = run_fleet(jobs, out, workers=1, plots=False)
    assert sorted(analysed) == ["clean", "stage"]  # broken's metadata names it "clean"
    assert sorted(third.analysed) == ["broken", "stage"] and third.failed == []
    assert files_of(out, "worker") == before["worker"]

    # a changed input makes its result stale; asking for plots redoes jobs analysed without them
    os.utime(tmp_path / "in" / "trace-worker.parquet", ns=(1, 1))
    assert run_fleet(jobs, out, workers=1, plots=False).analysed == ["worker"]
    gcpause = [j for j in jobs if j.name == "gcpause"]
    assert run_fleet(gcpause, out, workers=1, plots=True).analysed == ["gcpause"]
    assert run_fleet(gcpause, out, workers=1, plots=True).analysed == []
    assert run_fleet(gcpause, out, workers=1, plots=False).analysed == []


# -- the command ---------------------------------------------------------------------------
def run_cli(*args):
    from graphwia.cli.main import app

    return CliRunner().invoke(app, ["fleet", *map(str, args)])


def test_cli_runs_resumes_and_reports_failures(tmp_path):
    make_fleet(tmp_path / "in", real=False)
    out = tmp_path / "out"
    result = run_cli(tmp_path / "in", "--out", out, "--no-plots", "--workers", "1")
    assert result.exit_code == 1
    assert "1 of 5 job(s) failed: broken" in result.output
    assert "Traceback" not in result.output
    table = read_fleet_csv(out / "fleet.csv")
    assert (table["status"] == "ok").sum() == 4 and (out / "fleet.html").is_file()
    (tmp_path / "in" / "trace-broken.parquet").unlink()
    again = run_cli(tmp_path / "in", "--out", out, "--no-plots")
    assert again.exit_code == 0, again.output
    assert "0 analysed, 4 already complete, 0 failed" in again.output
    assert list(read_fleet_csv(out / "fleet.csv")["name"]) == sorted(SYNTH)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "exclude each other"),
        (["--workers", "0"], "--workers"),
        (["--scheduler", "nonsense"], "--scheduler nonsense: not a scheduler address like tcp://host:8786"),
    ],
)
def test_cli_rejects_bad_options(tmp_path, args, message):
    make_fleet(tmp_path / "in", real=False)
    result = run_cli(tmp_path / "in", "--out", tmp_path / "out", *args)
    assert result.exit_code == 2 and message in result.output


def test_cli_missing_input_is_one_line(tmp_path):
    result = run_cli(tmp_path / "nothing", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"graphwia: error: {tmp_path / 'nothing'}: no such directory or manifest file"
    ]


# -- the page renders ------------------------------------------------------------------------
def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(chromium() is None, reason="no Chromium/Chrome on PATH for the screenshot test")
def test_fleet_page_screenshot(fleet, tmp_path):
    paths = write_fleet(fleet["local"], tmp_path)
    shot = tmp_path / "fleet.png"
    subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            paths["html"].as_uri(),
        ],
        check=True,
        timeout=60,
        capture_output=True,
    )
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1000
    # the embedded plots rendered: many distinct colours, not a blank or broken-image page
    assert len(np.unique((pixels[..., :3] * 255).astype(int).reshape(-1, 3), axis=0)) > 50


def test_fleet_table_of_nothing_is_empty_with_columns():
    table = fleet_table([])
    assert list(table.columns) == list(COLUMNS) and table.empty
