"""Faults around a run (issue 13, items 2, 6, 7; issue 18, items 4 and 8).

* a fleet survives a killed (SIGKILL) and a stopped (SIGSTOP) worker, and its
  workers end with it;
* two runs committing into one directory never mix their files;
* SIGTERM ends a run like Ctrl-C, and a killed run's temporaries are removed
  by the next run;
* a run's outputs are one consistent set: the files of the same trial an
  earlier run wrote and this one did not are removed, others' files are kept;
* ``| head`` ends a command quietly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphwia.cli.main import app
from graphwia.fleet.report import write_fleet
from graphwia.fleet.run import MARKER, discover_jobs, job_dir, read_fleet_csv, run_fleet
from graphwia.outputs.job import PICTURES, output_paths
from graphwia.synth.generate import write_synth
from graphwia.utils.io import LOCK, MANIFEST, clean_stale_temporaries, output_set, write_text
from tests.test_errors import synth, write_case

GRAPHWIA = Path(sys.executable).with_name("graphwia")
needs_entry_point = pytest.mark.skipif(not GRAPHWIA.exists(), reason="graphwia entry point not installed in this venv")
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find worker processes")
HIDDEN = {MANIFEST, LOCK}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def visible(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()} - HIDDEN


# -- 2. a fleet survives a dead or stuck worker --------------------------------------------------------


@needs_proc
def test_fleet_survives_a_killed_and_a_stopped_worker(tmp_path):
    """SIGKILL the worker that starts job "b", SIGSTOP the one that starts "d": only those two fail."""
    names = ["a", "b", "c", "d", "e"]
    for seed, name in enumerate(names):
        write_synth(tmp_path / "in", name, dp=1, pp=2, microbatches=2, steps=1, seed=seed)
    jobs = discover_jobs(tmp_path / "in")
    out = tmp_path / "out"
    pids: dict[str, int] = {}

    def on_start(job, pid):
        pids[job.name] = pid
        if job.name == "b":
            os.kill(pid, signal.SIGKILL)
        elif job.name == "d":
            os.kill(pid, signal.SIGSTOP)

    started = time.monotonic()
    fleet = run_fleet(jobs, out, workers=3, plots=False, job_timeout=5, on_start=on_start)
    assert time.monotonic() - started < 60
    table = fleet.jobs.set_index("name")
    assert fleet.failed == ["b", "d"]
    assert "killed by SIGKILL" in table.loc["b", "error"]
    assert "timed out after 5 s" in table.loc["d", "error"]
    assert (table.drop(index=["b", "d"])["status"] == "ok").all()
    assert not (job_dir(out, "b") / MARKER).exists() and not (job_dir(out, "d") / MARKER).exists()
    paths = write_fleet(fleet, out)
    assert list(read_fleet_csv(paths["csv"])["name"]) == names
    assert len(set(pids.values())) >= 3  # the dead workers were replaced
    assert not [pid for pid in set(pids.values()) if alive(pid)]


@needs_entry_point
@needs_proc
def test_fleet_workers_end_when_the_parent_is_killed(tmp_path):
    """The parent is killed once job "a" is done: the workers, busy with the two larger jobs, end with it."""
    write_synth(tmp_path / "in", "a", dp=1, pp=2, microbatches=2, steps=1)
    for seed, name in enumerate("bc"):
        write_synth(tmp_path / "in", name, dp=4, pp=4, microbatches=16, steps=6, seed=seed)
    proc = subprocess.Popen(
        [str(GRAPHWIA), "fleet", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "2", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        workers: set[int] = set()
        while time.monotonic() < deadline and not list((tmp_path / "out").glob("jobs/*/result-*.json")):
            workers |= children(proc.pid)
            time.sleep(0.05)
        workers |= children(proc.pid)
        assert workers, "no worker process started"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)]


def test_job_timeout_and_scheduler_exclude_each_other(tmp_path):
    write_synth(tmp_path, "a", dp=1, pp=2, microbatches=2, steps=1)
    result = run("fleet", tmp_path, "--out", tmp_path / "out", "--job-timeout", "5", "--scheduler", "tcp://127.0.0.1:1")
    assert result.exit_code == 2 and "--job-timeout and --scheduler exclude each other" in result.stderr


def test_cli_job_timeout_records_the_job(tmp_path):
    """A timed-out job is a failed row of fleet.csv with the time limit in its error."""
    write_synth(tmp_path, "a", dp=1, pp=2, microbatches=2, steps=1)
    out = tmp_path / "out"
    result = run("fleet", tmp_path, "--out", out, "--no-plots", "--job-timeout", "0.001", "-q")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("graphwia: error: 1 of 1 job(s) failed: a")
    row = read_fleet_csv(out / "fleet.csv").iloc[0]
    assert row["status"] == "failed" and "timed out after 0.001 s" in row["error"]


# -- 6. concurrent runs into one directory ------------------------------------------------------------


def test_concurrent_runs_never_mix_their_sets(tmp_path, monkeypatch):
    """Renames slowed down (as on a network filesystem): two runs committing together leave one run's set.

    Run 0's first rename takes 60 ms, run 1's second and third 40 ms each: interleaved, run 0 would
    win result- and ms-, run 1 mw-.
    """
    from graphwia import analyze, load_trace
    from graphwia.outputs.job import write_outputs

    analyses = [analyze(load_trace(write_case(tmp_path / f"in{seed}", *synth(seed=seed)))) for seed in (1, 2)]
    expected = []
    for i, analysis in enumerate(analyses):
        alone = tmp_path / f"alone{i}"
        write_outputs(analysis, alone, plots=False)
        expected.append({name: (alone / name).read_bytes() for name in visible(alone)})
    real_replace = os.replace
    delays = {"run-0": {"result-t.json": 0.06}, "run-1": {"ms-t.json": 0.04, "mw-t.json": 0.04}}

    def slow_replace(src, dst):
        time.sleep(delays.get(threading.current_thread().name, {}).get(Path(dst).name, 0.0))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", slow_replace)
    out = tmp_path / "shared"
    for _ in range(3):
        barrier = threading.Barrier(2)

        def commit(analysis, barrier=barrier):
            barrier.wait()
            write_outputs(analysis, out, plots=False)

        threads = [threading.Thread(target=commit, args=(a,), name=f"run-{i}") for i, a in enumerate(analyses)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        now = {name: (out / name).read_bytes() for name in visible(out)}
        assert now in expected


# -- 7. killed runs leave no garbage ----------------------------------------------------------------------


def _temporary(directory: Path, pid: int, host: str | None = None) -> Path:
    host = host or "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:32]
    path = directory / f".result-t.json.graphwia-{host}-{pid}-abc_123.tmp"
    path.write_text("half")
    return path


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = _temporary(tmp_path, int(dead.stdout))
    ours = _temporary(tmp_path, os.getpid())
    foreign_host = _temporary(tmp_path, int(dead.stdout), host="otherhost")
    user_files = [tmp_path / ".result-t.json.abc.tmp", tmp_path / "notes.tmp", tmp_path / "result-t.json"]
    for path in user_files:
        path.write_text("mine")
    assert clean_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and ours.exists() and foreign_host.exists()
    assert all(path.exists() for path in user_files)


@needs_entry_point
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_during_writing(tmp_path, sig):
    """SIGTERM ends a run like Ctrl-C (exit 143, one line, no temporaries); after SIGKILL the next run cleans up.

    The signal is sent once the run has begun writing (a temporary of its own appeared in --out).
    """
    frame, meta = synth(dp=4, pp=4, microbatches=8, steps=6)
    trace = write_case(tmp_path, frame, meta)
    out = tmp_path / "out"
    first = run("analyze", trace, "--out", out, "-q", "--no-plots")
    assert first.exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen(
        [str(GRAPHWIA), "analyze", str(trace), "--out", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline
        and proc.poll() is None
        and not [p for p in out.glob(f".*graphwia-*-{proc.pid}-*.tmp") if not p.name.startswith(".probe.")]
    ):
        time.sleep(0.005)  # (the probe of the output directory lives for a moment only)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143, stderr
        assert stderr == "graphwia: error: terminated\n"
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier set, untouched
    else:
        assert proc.returncode == -signal.SIGKILL
        assert list(out.glob(".*.tmp")), "the killed run left no temporary: the test did not kill it mid-write"
        again = run("analyze", trace, "--out", out, "-q")
        assert again.exit_code == 0, again.stderr
        assert not list(out.glob(".*.tmp"))


# -- issue 18, item 4: a run's outputs are one consistent set ------------------------------------------


def test_a_run_leaves_exactly_its_own_set(tmp_path):
    frame, meta = synth(steps=3)
    trace = write_case(tmp_path, frame, meta)
    other_frame, other_meta = synth(seed=5)
    other_meta["trial_name"] = "other"
    other = write_case(tmp_path / "other", other_frame, other_meta)
    other.rename(tmp_path / "other" / "trace-other.parquet")
    (tmp_path / "other" / "meta-t.yaml").rename(tmp_path / "other" / "meta-other.yaml")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "heatmap-t.png.bak").write_text("mine too")

    assert run("analyze", tmp_path / "other" / "trace-other.parquet", "--out", out, "-q", "--no-plots").exit_code == 0
    assert run("analyze", trace, "--out", out, "-q").exit_code == 0
    full = visible(out)
    assert {
        "report-t.html",
        "heatmap-t.png",
        "heatmap-worker-t.png",
        "timeline-t.json.gz",
        "ideal-timeline-t.json.gz",
    } <= full

    assert run("analyze", trace, "--out", out, "-q", "--no-per-worker").exit_code == 0
    assert visible(out) == full - {"heatmap-worker-t.png"}

    assert run("analyze", trace, "--out", out, "-q", "--no-plots", "--steps", "1").exit_code == 0
    results = {
        trial: {path.name for kind, path in output_paths(out, trial).items() if kind not in PICTURES}
        for trial in ("t", "other")
    }
    assert "result-t.json" in results["t"] and "mw-other.json" in results["other"]
    assert visible(out) == results["t"] | results["other"] | {"notes.txt", "heatmap-t.png.bak"}


def test_output_set_refuses_paths_outside_its_directory(tmp_path):
    from graphwia.errors import OutputError

    out = tmp_path / "out"
    with pytest.raises(OutputError, match="outside the output directory"):
        with output_set(out, key="k"):
            write_text(out / "a.txt", "a")
            write_text(out / ".." / "escape.txt", "b")
    assert not (tmp_path / "escape.txt").exists() and not (out / "a.txt").exists()


def test_a_tampered_manifest_never_removes_files_outside(tmp_path):
    out = tmp_path / "out"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    with output_set(out, key="k"):
        write_text(out / "a.txt", "a")
    (out / MANIFEST).write_text('{"version": 1, "sets": {"k": ["a.txt", "../victim.txt", "/etc/hostname"]}}')
    with output_set(out, key="k"):
        write_text(out / "b.txt", "b")
    assert victim.read_text() == "keep me" and visible(out) == {"b.txt"}


# -- issue 18, item 8: | head ends quietly ---------------------------------------------------------------


@needs_entry_point
def test_closed_stdout_ends_quietly(tmp_path):
    frame, meta = synth()
    trace = write_case(tmp_path, frame, meta)
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written, as after `| head -0`
    try:
        proc = subprocess.run(
            [str(GRAPHWIA), "analyze", str(trace), "--out", str(tmp_path / "out"), "--no-plots"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert proc.stderr == "" and proc.returncode == 141
