"""One job's scenario families split over a dask cluster: the same numbers as a local run (issue 14)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import real_trace, requires_data
from typer.testing import CliRunner

import graphwia
from graphwia.engine.distributed import ClusterEvaluator
from graphwia.errors import ArgumentError, UsageError
from graphwia.synth.generate import synthesize, write_synth
from graphwia.utils.cluster import connect

distributed = pytest.importorskip("distributed")

#: A job whose S passes the threshold (attribution runs) and that has launch delays.
SLOW = dict(dp=4, pp=2, microbatches=4, steps=3, seed=7, slow_workers=[(1, 1, 1.6)])


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as local_cluster:
        yield local_cluster


def assert_same_analysis(a, b):
    assert a.slowdown == b.slowdown and a.launch_slowdown == b.launch_slowdown
    assert np.array_equal(a.step_slowdown, b.step_slowdown)
    assert a.blocking == b.blocking and a.launch == b.launch
    assert a.ms == b.ms and a.mw == b.mw
    for column in a.worker_table:
        assert np.array_equal(a.worker_table[column], b.worker_table[column], equal_nan=True), column


def test_a_cluster_run_equals_a_local_run(cluster):
    trace = graphwia.Trace.from_frame(*synthesize(**SLOW))
    local = graphwia.analyze(trace, decompose_threshold=0.5)
    assert local.blocking["worker"].overall and local.launch["optype"].overall  # every family that gets split ran
    on_cluster = graphwia.analyze(trace, decompose_threshold=0.5, scheduler=cluster.scheduler_address)
    assert_same_analysis(local, on_cluster)


@requires_data
def test_a_cluster_run_of_a_real_trace_equals_a_local_run(cluster):
    trace = real_trace("AR")
    assert_same_analysis(graphwia.analyze(trace), graphwia.analyze(trace, scheduler=cluster.scheduler_address))


def test_local_worker_processes_give_the_same_numbers():
    trace = graphwia.Trace.from_frame(*synthesize(**dict(SLOW, steps=2)))
    assert_same_analysis(graphwia.analyze(trace), graphwia.analyze(trace, workers=2))


def test_a_family_is_cut_into_parts_put_back_in_order(cluster):
    trace = graphwia.Trace.from_frame(*synthesize(**SLOW))
    dag = graphwia.build_dag(trace)
    compiled = dag.compile()
    weights = graphwia.observed_weights(dag)
    codes = dag.table["dp_rank"].astype(np.int64) * 2 + dag.table["stage"]
    family = graphwia.engine.scenarios.Swap(weights.weight * 0.9, codes, 8, chosen_weight=weights.weight)
    with ClusterEvaluator(scheduler=cluster.scheduler_address) as evaluator:
        assert evaluator.n_workers == 2
        split = evaluator.evaluate(compiled, family)
        again = evaluator.evaluate(compiled, family)  # the DAG is sent once, the family each time
    whole = compiled.evaluate_family(family)
    assert np.array_equal(split.step_time, whole.step_time) and np.array_equal(split.span, whole.span)
    assert np.array_equal(again.step_time, whole.step_time) and split.start is None


#: What-if scenarios of SLOW: shared selections, ideal and healthy weights, sets, scales and launch delays.
WHATIF = [{"name": f"s{i}", "where": {"stage": [i % 2]}, "scale": {"duration": 0.55 + i / 10}} for i in range(7)] + [
    {"name": "heal", "where": {"dp_rank": [1], "stage": [1]}, "healthy": True},
    {"name": "typical-0", "where": {"stage": [0]}, "ideal": True, "scale": {"transfer": 0.5}},
    {"name": "late", "where": {"optype": ["optimizer"]}, "set": {"launch_delay": 0.01}},
]


def assert_same_whatif(a, b):
    assert np.array_equal(a.step_time, b.step_time) and np.array_equal(a.baseline_span, b.baseline_span)
    assert a.speedup == b.speedup and a.warnings == b.warnings


@pytest.mark.parametrize("baseline", ["nodelay", "base", "ideal"])
def test_a_what_if_batch_on_a_cluster_equals_a_local_run(cluster, baseline):
    """The workers get the batch's edits, build the columns of their parts and return a local run's numbers."""
    from graphwia.analyses.whatif import parse_scenarios, run_whatif

    trace = graphwia.Trace.from_frame(*synthesize(**SLOW))
    entries = [e for e in WHATIF if not (baseline == "ideal" and e.get("ideal"))]
    scenarios = parse_scenarios({"baseline": baseline, "scenarios": entries})
    local = run_whatif(trace, scenarios)
    assert_same_whatif(local, run_whatif(trace, scenarios, scheduler=cluster.scheduler_address))
    if baseline == "base":  # the masking checks ran on the cluster too
        assert local.warnings


def test_a_what_if_batch_on_local_worker_processes():
    from graphwia.analyses.whatif import parse_scenarios, run_whatif

    analysis = graphwia.analyze(graphwia.Trace.from_frame(*synthesize(**dict(SLOW, steps=2))), per_worker=False)
    scenarios = parse_scenarios({"scenarios": WHATIF})
    assert_same_whatif(run_whatif(analysis, scenarios), run_whatif(analysis, scenarios, workers=2))


@requires_data
def test_a_thousand_what_ifs_of_a_real_trace_on_a_cluster(cluster):
    from graphwia.analyses.whatif import parse_scenarios, run_whatif

    trace = real_trace("AR")
    scenarios = parse_scenarios(
        {
            "scenarios": [
                {
                    "name": f"s{i}",
                    "where": {
                        "optype": [("forward-compute", "backward-compute")[i % 2]],
                        **({"stage": ["last"]} if i % 3 == 0 else {}),
                    },
                    "scale": {"duration": round(0.5 + (i + 0.5) / 1000, 6)},
                }
                for i in range(1000)
            ]
        }
    )
    assert_same_whatif(run_whatif(trace, scenarios), run_whatif(trace, scenarios, scheduler=cluster.scheduler_address))


def test_cli_whatif_on_a_cluster_prints_the_same_json(cluster, tmp_path):
    from graphwia.cli.main import app

    trace, _ = write_synth(tmp_path, "slow", **SLOW)
    spec = tmp_path / "what-if.yaml"
    spec.write_text(json.dumps({"baseline": "base", "scenarios": WHATIF}))
    runner = CliRunner()
    local = runner.invoke(app, ["whatif", str(trace), "--scenarios", str(spec), "--json"])
    remote = runner.invoke(
        app, ["whatif", str(trace), "--scenarios", str(spec), "--json", "--scheduler", cluster.scheduler_address]
    )
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    assert json.loads(local.stdout) == json.loads(remote.stdout) and local.stderr == remote.stderr


def test_cli_on_a_cluster_writes_the_same_results(cluster, tmp_path):
    from graphwia.cli.main import app

    trace, meta = write_synth(tmp_path, "slow", **SLOW)
    runner = CliRunner()
    local = runner.invoke(app, ["analyze", str(trace), "--out", str(tmp_path / "local"), "--no-plots", "-q"])
    remote = runner.invoke(
        app,
        [
            "analyze",
            str(trace),
            "--out",
            str(tmp_path / "remote"),
            "--no-plots",
            "-q",
            "--scheduler",
            cluster.scheduler_address,
        ],
    )
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    for name in ("result-slow.json", "ms-slow.json", "mw-slow.json"):
        assert json.loads((tmp_path / "local" / name).read_text()) == json.loads(
            (tmp_path / "remote" / name).read_text()
        )


@pytest.mark.parametrize("command", ["analyze", "whatif"])
@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "exclude each other"),
        (["--scheduler", "nonsense"], "--scheduler nonsense: not a scheduler address like tcp://host:8786"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_cli_rejects_bad_cluster_options(tmp_path, command, args, message):
    from graphwia.cli.main import app

    trace, _ = write_synth(tmp_path, "tiny", dp=2, pp=2, microbatches=2, steps=1, seed=1)
    spec = tmp_path / "s.yaml"
    spec.write_text("scenarios: [{name: ideal, ideal: true}]\n")
    own = ["--out", str(tmp_path / "out")] if command == "analyze" else ["--scenarios", str(spec)]
    result = CliRunner().invoke(app, [command, str(trace), *own, *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_cli_whatif_timelines_need_a_local_run(tmp_path):
    from graphwia.cli.main import app

    trace, _ = write_synth(tmp_path, "tiny", dp=2, pp=2, microbatches=2, steps=1, seed=1)
    spec = tmp_path / "s.yaml"
    spec.write_text("scenarios: [{name: ideal, ideal: true}]\n")
    result = CliRunner().invoke(
        app, ["whatif", str(trace), "--scenarios", str(spec), "--workers", "2", "--timelines", str(tmp_path / "tl")]
    )
    assert result.exit_code == 2 and "--timelines needs every op's times" in result.stderr
    assert not (tmp_path / "tl").exists()


def test_evaluator_needs_exactly_one_of_scheduler_and_workers():
    with pytest.raises(UsageError, match="either a scheduler address or a number of local workers"):
        ClusterEvaluator()
    with pytest.raises(UsageError, match="either"):
        ClusterEvaluator(scheduler="tcp://127.0.0.1:1", workers=2)
    with pytest.raises(ArgumentError, match="workers 0: local workers must be at least 1"):
        ClusterEvaluator(workers=0)


def test_the_evaluator_works_inside_its_with_block_only():
    evaluator = ClusterEvaluator(workers=1)  # no cluster until the block starts
    with pytest.raises(RuntimeError, match="ClusterEvaluator.n_workers outside its 'with' block"):
        _ = evaluator.n_workers  # was an AttributeError on None
    with pytest.raises(RuntimeError, match="ClusterEvaluator.evaluate outside its 'with' block"):
        evaluator.evaluate(None, None)


def test_an_unreachable_scheduler_is_one_clear_error():
    with pytest.raises(UsageError, match="tcp://127.0.0.1:1: cannot connect to the dask scheduler"):
        connect("tcp://127.0.0.1:1")
