"""Smoke tests of the benchmark harness (benchmarks/bench.py): fields exist and are sane; no timing asserts."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest

from graphwia.synth.generate import write_synth

BENCH_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
PHASE_FIELDS = (
    "load_s",
    "validate_s",
    "build_s",
    "weights_s",
    "compile_s",
    "eval1_s",
    "eval_batch_s",
    "eval_per_scenario_ms",
    "eval_warm_s",
    "eval_warm_per_scenario_ms",
    "analyze_s",
    "analyze_us_per_op",
    "analyze_peak_mb",
    "phases_peak_mb",
)
SIZE_FIELDS = ("n_ops", "n_nodes", "n_edges", "n_levels", "n_steps", "n_workers")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench", None)


@pytest.fixture(scope="module")
def tiny_trace(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return write_synth(out, "tiny", dp=2, pp=2, microbatches=4, steps=3, seed=1)


def test_measure_phases_reports_every_phase_positive(bench, tiny_trace):
    row = bench.measure_phases(*tiny_trace, batch=4)
    for name in PHASE_FIELDS + SIZE_FIELDS:
        assert row[name] > 0, name
    assert row["import_s"] >= 0
    assert row["batch"] == 4
    assert row["n_workers"] == 4 and row["n_steps"] == 3
    assert row["n_nodes"] > row["n_ops"]  # barriers and step sources are nodes too
    assert row["analyze_phases"] and all(s >= 0 for s in row["analyze_phases"].values())
    assert math.isclose(row["eval_per_scenario_ms"], 1e3 * row["eval_batch_s"] / 4)
    json.dumps(row)  # a child prints it as JSON


def test_measure_synth_writes_a_loadable_trace(bench, tmp_path):
    from graphwia import load_trace

    row = bench.measure_synth(tmp_path, "s", {"dp": 2, "pp": 2, "microbatches": 4, "steps": 2})
    assert row["synth_s"] > 0 and row["synth_write_s"] > 0 and row["synth_peak_mb"] > 0
    assert len(load_trace(tmp_path / "trace-s.parquet").ops) == row["synth_rows"]


def test_whole_harness_on_a_tiny_job_writes_table_json_and_plot(bench, tmp_path, capsys):
    """End to end with child processes (synth, phases, graphwia analyze) on one tiny synthetic job."""
    history = tmp_path / "history.json"
    code = bench.main(
        [
            "--traces",
            "none",
            "--sizes",
            "3e3",
            "--repeat",
            "1",
            "--batch",
            "3",
            "--out",
            str(tmp_path),
            "--history",
            str(history),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [run["jobs"].keys() for run in report["history"]] == [{"synth-3e3"}]
    assert json.loads(history.read_text())["history"] == report["history"]
    (row,) = report["jobs"]
    assert row["job"] == "synth-3e3" and row["kind"] == "synth" and row["runs"] == 1
    for name in PHASE_FIELDS + ("cli_wall_s", "cli_peak_mb", "synth_s", "phases_child_wall_s"):
        assert row[name] > 0, name
    assert row["cli_wall_s"] > row["analyze_s"]  # the whole process includes imports and loading
    assert report["machine"]["cpus"] >= 1 and "slopes" in report["fit"]
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "synth-3e3" in capsys.readouterr().out


def test_profile_names_the_analysis(bench, tiny_trace, tmp_path):
    bench.profile_analysis(*tiny_trace, tmp_path / "profile.txt", top=10)
    text = (tmp_path / "profile.txt").read_text()
    assert "cumulative" in text and "analyze" in text


def test_unknown_profile_job_is_named(bench, tmp_path, capsys):
    code = bench.main(["--traces", "none", "--sizes", "none", "--out", str(tmp_path)])
    assert code == 2 and "nothing to measure" in capsys.readouterr().err


def test_failing_child_is_a_one_line_error(bench, tmp_path, capsys):
    meta = tmp_path / "meta-bad.yaml"
    meta.write_text("trial_name: bad\n")
    (tmp_path / "trace-bad.parquet").write_bytes(b"not parquet")
    job = bench.Job("bad", tmp_path / "trace-bad.parquet", meta)
    row = bench.run_job(job, tmp_path, bench.Limits(timeout_s=120), batch=2, say=lambda m: None)
    assert re.match(r"^bad phases: exit code 1: .*meta-bad.yaml", row["error"])
    assert row["targets"].startswith("FAIL exit code 1") and "cli_wall_s" not in row


def test_memory_cap_turns_a_big_allocation_into_out_of_memory(bench):
    run = bench.run_child([sys.executable, "-c", "import numpy; numpy.ones(2**31 // 8 * 3)"], memory_gb=1.0)
    with pytest.raises(bench.BenchError, match="out of memory"):
        bench.child_json(run, "big")


def test_best_of_takes_the_minimum_of_every_number(bench):
    best = bench.best_of(
        [{"a": 2.0, "n": 5, "name": "x", "sub": {"b": 1.0}}, {"a": 1.0, "n": 5, "name": "y", "sub": {"b": 0.5}}]
    )
    assert best == {"a": 1.0, "n": 5, "name": "x", "sub": {"b": 0.5}}


def test_loglog_slope_recovers_the_exponent(bench):
    ops = [1e5, 1e6, 2e6]
    assert bench.loglog_slope(ops, [3e-6 * o for o in ops]) == pytest.approx(1.0)
    assert bench.loglog_slope(ops, [1e-9 * o**1.5 for o in ops]) == pytest.approx(1.5)
    assert bench.loglog_slope([1e5], [1.0]) is None
    assert bench.loglog_slope(ops, [None, 1.0, 2.0]) == pytest.approx(1.0)


def test_sizes_parse_and_name(bench):
    assert bench.parse_sizes("small,1e6,2e6") == [1e5, 1e6, 2e6]
    assert bench.parse_sizes("none") == []
    assert [bench.size_name(x) for x in (1e5, 2e6, 1.5e5)] == ["1e5", "2e6", "1.5e5"]
    with pytest.raises(bench.BenchError, match="'huge'"):
        bench.parse_sizes("1e5,huge")
    with pytest.raises(bench.BenchError, match="at least 1"):
        bench.parse_sizes("0")


def test_synthetic_jobs_scale_dp_ranks_only(bench, tmp_path):
    jobs = bench.synth_jobs([1e5, 1e6], tmp_path)
    assert [j.name for j in jobs] == ["synth-1e5", "synth-1e6"]
    small, big = (j.synth for j in jobs)
    assert {k: v for k, v in small.items() if k != "dp"} == {k: v for k, v in big.items() if k != "dp"}
    assert big["dp"] > 5 * small["dp"]


def test_target_verdicts(bench):
    assert bench.target_verdict("AR", {"cli_wall_s": 0.3, "whatif_wall_s": 1.0}) == "ok"
    assert (
        bench.target_verdict("AR", {"cli_wall_s": 1.2, "export_peak_mb": 600})
        == "MISS wall 1.2>0.36, export MB 600>500"
    )
    assert bench.target_verdict("synth-2e6", {"eval_warm_ns_per_op": 4.5}) == "MISS ns/op 4.5>3"
    assert bench.target_verdict("synth-1e5", {"cli_wall_s": 9.0}) == ""


def test_the_named_jobs_have_the_issues_shapes(bench, tmp_path):
    jobs = {j.name: j.synth for j in bench.synth_jobs([2e6, 1e7], tmp_path)}
    assert jobs["synth-2e6"] == dict(bench.SYNTH_SHAPE, dp=64)
    assert jobs["synth-1e7"] == dict(bench.SYNTH_SHAPE, dp=128, pp=16)


def test_history_keeps_earlier_runs(bench):
    first = {"machine": {"commit": "a1", "date": "d1"}, "jobs": [{"job": "AR", "cli_wall_s": 0.5, "other": 1}]}
    runs = bench.history(first, {"machine": {"commit": "b2"}, "jobs": [{"job": "AR", "cli_wall_s": 0.4}]})
    assert [r["commit"] for r in runs] == ["a1", "b2"] and runs[0]["jobs"] == {"AR": {"cli_wall_s": 0.5}}
    again = bench.history({"history": runs}, {"machine": {"commit": "c3"}, "jobs": []})
    assert [r["commit"] for r in again] == ["a1", "b2", "c3"]
    assert [r["commit"] for r in bench.history(None, {"machine": {"commit": "x"}, "jobs": []})] == ["x"]


def test_kernels_are_compared_on_the_same_batch(bench, tiny_trace):
    row = bench.measure_phases(*tiny_trace, batch=3)
    for name in (
        "kernel_load_s",
        "eval_numpy_ns_per_op",
        "eval_compiled_ns_per_op",
        "swap_numpy_ns_per_op",
        "swap_compiled_ns_per_op",
        "eval_warm_ns_per_op",
    ):
        assert row[name] > 0, name


def test_whatif_scenarios_fit_any_trace(bench, tiny_trace, tmp_path):
    from graphwia import load_trace
    from graphwia.analyses.whatif import load_scenarios, run_whatif

    scenarios = load_scenarios(bench.write_whatif_scenarios(tmp_path / "w.yaml", 12))
    assert len(set(scenarios.names)) == 12
    assert run_whatif(load_trace(*tiny_trace), scenarios).step_time.shape[1] == 12


def test_per_worker_switch_reaches_both_children(bench, tiny_trace):
    assert bench.graphwia_command(Path("t"), Path("m"), Path("o"), per_worker=False)[-1] == "--no-per-worker"
    assert "--per-worker 0" in " ".join(bench.bench_command("phases", per_worker=0))
    row = bench.measure_phases(*tiny_trace, batch=2, per_worker=False)
    assert row["analyze_s"] > 0
