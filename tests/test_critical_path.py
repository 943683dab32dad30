"""Critical paths: exactness on the real traces, who is on them, the API, outputs and the CLI."""

from __future__ import annotations

import gzip
import json
from unittest.mock import ANY

import numpy as np
import pandas as pd
import pytest
from conftest import real_analysis, requires_data
from typer.testing import CliRunner

from graphwia import Trace, UsageError, build_dag, observed_weights
from graphwia.analyses.critical_path import (
    ELEMENT_COLUMNS,
    PathSummary,
    critical_path,
    scenario_critical_path,
    simulated_critical_path,
)
from graphwia.outputs.critical_path import critical_paths_dict, critical_timeline_events, write_critical_paths
from graphwia.synth.generate import synthesize, write_synth

GROUP_LINKS = ("p2p-pair", "dp-collective", "embedding", "clip")
SCENARIOS = ("base", "nodelay", "ideal")


def analysis_paths(name: str, scenario: str):
    analysis = real_analysis(name)
    weight = analysis.ideal if scenario == "ideal" else analysis.weights.weight
    return analysis, simulated_critical_path(analysis.dag, analysis.simulations[scenario], weight, scenario=scenario)


@pytest.fixture(scope="module")
def synth_trace() -> Trace:
    frame, meta = synthesize(dp=2, pp=4, microbatches=8, steps=3, seed=1, slow_workers=[(1, 2, 2.0)])
    return Trace.from_frame(frame, meta)


# -- exactness on every step of the real traces --------------------------------------------------


@requires_data
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_paths_are_exact_on_every_step(trace_name, scenario):
    analysis, paths = analysis_paths(trace_name, scenario)
    dag = analysis.dag
    has_intra_pred = np.zeros(dag.n_ops, dtype=bool)
    has_intra_pred[dag.edges.dst[dag.edges.via >= 0]] = True
    intra_edges = set(zip(dag.edges.via[dag.edges.via >= 0].tolist(), dag.edges.dst[dag.edges.via >= 0].tolist()))
    barrier = dag.ops["barrier"].to_numpy()
    members = np.flatnonzero(barrier >= 0)
    group_sync = np.full(dag.n_nodes, -np.inf)
    np.maximum.at(group_sync, barrier[members], paths.start[members])
    delay = analysis.weights.delay if scenario == "base" else np.zeros(dag.n_ops)
    assert paths.steps == [int(s) for s in dag.steps]
    for step, path in paths.elements.groupby("step"):
        ops = path["op"].to_numpy()
        # The last element ends exactly at the simulated step time, the first has no predecessor.
        assert path["end"].iloc[-1] == paths.step_time[step]
        assert path["optype"].iloc[-1] == "optimizer"
        assert not has_intra_pred[ops[0]]
        assert path["on_path"].sum() == pytest.approx(paths.step_time[step], abs=1e-9)
        # Every hop is an edge of the DAG: an intra-worker edge, or two members of one group.
        links = path["link"].to_numpy()[:-1]
        for u, v, link in zip(ops[:-1], ops[1:], links):
            assert (barrier[u] == barrier[v] >= 0) if link in GROUP_LINKS else (int(u), int(v)) in intra_edges
        # Each hop is tight: it set the next op's start, and a member entered by its start arrived last.
        intra = ~np.isin(links, GROUP_LINKS)
        handoff = path["handoff"].to_numpy()
        np.testing.assert_allclose(
            path["start"].to_numpy()[1:][intra], handoff[:-1][intra] + delay[ops[1:][intra]], rtol=0, atol=1e-9
        )
        entered_by_start = np.concatenate([[True], intra])
        for op in ops[entered_by_start & (barrier[ops] >= 0)]:
            assert paths.start[op] == group_sync[barrier[op]]
        # Handoffs never decrease, except by a negative launch delay or transfer SPEC §3 keeps (base only).
        rise = np.diff(path["handoff"].to_numpy())
        slack = np.minimum(path["delay"].to_numpy()[1:], 0) + np.minimum(path["weight"].to_numpy()[1:], 0)
        if scenario == "base":
            assert (rise >= slack - 1e-12).all()
            assert (rise > -0.01).all()
        else:
            assert (rise >= 0).all()
        # Ends never decrease along intra-worker hops; a group hop hands off at the group's sync time.
        end = path["end"].to_numpy()
        assert (np.diff(end)[intra] >= slack[intra] - 1e-12).all()
        assert (end[1:][~intra] >= path["handoff"].to_numpy()[:-1][~intra] + slack[~intra] - 1e-12).all()


@requires_data
def test_delay_column_is_the_launch_delay():
    analysis, paths = analysis_paths("AR", "base")
    ops = paths.elements["op"].to_numpy()
    assert np.abs(paths.elements["delay"].to_numpy() - analysis.weights.delay[ops]).max() < 1e-9


@requires_data
def test_slowed_worker_is_on_the_ar_path_of_nearly_every_step():
    _, paths = analysis_paths("AR", "nodelay")
    summary = paths.summary()
    worker = summary.by_worker[0, 0]
    assert worker.step_fraction >= 0.95
    assert next(iter(summary.by_worker)) == (0, 0)  # the most time on the path
    assert worker.share > 0.8


@requires_data
def test_last_stage_dominates_the_st_path():
    _, paths = analysis_paths("ST", "nodelay")
    by_stage = paths.summary().by_stage
    assert next(iter(by_stage)) == 3
    assert by_stage[3].share > 0.5


# -- API on synthetic traces ----------------------------------------------------------------------


def test_custom_scenario_arrays_match_a_simulation(synth_trace):
    dag = build_dag(synth_trace)
    compiled = dag.compile()
    weights = observed_weights(dag)
    paths = critical_path(dag, compiled, weights.weight, np.zeros(dag.n_ops), scenario="mine")
    again = simulated_critical_path(dag, compiled.evaluate(weights.weight, np.zeros(dag.n_ops)), weights.weight)
    pd.testing.assert_frame_equal(paths.elements, again.elements)
    assert paths.scenario == "mine"
    # A custom what-if: the slow worker made fast leaves the path mostly to others.
    fast = weights.weight.copy()
    slow = (dag.ops["dp_rank"].to_numpy() == 1) & (dag.ops["stage"].to_numpy() == 2)
    fast[slow] *= 0.3
    before = paths.summary().by_worker[1, 2].share
    after = critical_path(dag, compiled, fast, np.zeros(dag.n_ops)).summary().by_worker.get((1, 2))
    assert before > 0.3 > (after.share if after else 0)
    with pytest.raises(UsageError, match="one scenario"):
        critical_path(dag, compiled, np.column_stack([fast, fast]), np.zeros((dag.n_ops, 2)))
    with pytest.raises(UsageError, match="step"):
        critical_path(dag, compiled, fast, np.zeros(dag.n_ops), steps=[99])
    # A simulation of step times only (times=False) has no op times to walk: said so, not a TypeError.
    step_times_only = compiled.evaluate(weights.weight, np.zeros(dag.n_ops), times=False)
    with pytest.raises(UsageError, match="times=True"):
        simulated_critical_path(dag, step_times_only, weights.weight)


def test_summary_is_typed_and_elements_a_view_built_on_first_use(synth_trace):
    paths = scenario_critical_path(synth_trace, "nodelay", steps=[1, 2])
    assert "elements" not in vars(paths)  # the DataFrame view is not built by the walk
    np.testing.assert_array_equal(paths.path(2), paths.elements.loc[paths.elements["step"] == 2, "op"])
    assert paths.elements is paths.elements
    summary = paths.summary()
    assert isinstance(summary, PathSummary) and summary.steps == 2
    assert summary.mean_path_length == len(paths.elements) / 2
    assert summary.mean_step_time == np.mean([paths.step_time[1], paths.step_time[2]])
    assert sum(e.share for e in summary.by_optype.values()) == pytest.approx(1.0)
    assert sum(e.time for e in summary.by_stage.values()) == pytest.approx(summary.mean_step_time)
    assert all(isinstance(stage, int) for stage in summary.by_stage)
    slow = summary.by_worker[1, 2]
    assert slow.steps_on_path == 2 and slow.step_fraction == 1.0
    times = [e.time for e in summary.by_worker.values()]
    assert times == sorted(times, reverse=True)  # the most time first


def test_json_csv_and_timeline_forms(synth_trace, tmp_path):
    paths = scenario_critical_path(synth_trace, "nodelay", steps=[1, 2])
    data = critical_paths_dict(paths)
    assert data["scenario"] == "nodelay" and [s["step"] for s in data["steps"]] == [1, 2]
    element = data["steps"][0]["path"][-1]
    assert list(element) == list(ELEMENT_COLUMNS) and element["link"] is None and element["mb_id"] is None
    assert data["steps"][0]["step_time"] == element["end"]
    # The published summary schema: string keys "stage" and "dp_rank,stage", in the typed summary's order.
    summary, typed = data["summary"], paths.summary()
    assert list(summary) == ["steps", "mean_step_time", "mean_path_length", "by_optype", "by_stage", "by_worker"]
    assert list(summary["by_optype"]) == list(typed.by_optype)
    assert list(summary["by_stage"]) == [str(stage) for stage in typed.by_stage]
    assert list(summary["by_worker"]) == [f"{d},{s}" for d, s in typed.by_worker]
    assert summary["by_stage"]["2"] == {"time": typed.by_stage[2].time, "share": typed.by_stage[2].share}
    assert summary["by_worker"]["1,2"] == {"time": ANY, "share": ANY, "steps_on_path": 2, "step_fraction": 1.0}
    json.dumps(data)  # plain JSON values only

    csv = write_critical_paths(paths, tmp_path / "cp.csv")
    table = pd.read_csv(csv)
    assert len(table) == len(paths.elements) and list(table.columns) == ["step", "hop", *ELEMENT_COLUMNS]

    events = critical_timeline_events(paths)
    marked = [e for e in events if e.get("cat") == "critical"]
    flows = [e for e in events if e.get("ph") == "s"]
    assert len(marked) == len(paths.elements)
    assert len(flows) == len(paths.elements) - 2  # one arrow per hop, two paths
    assert {e["args"]["step"] for e in events if e.get("ph") == "X"} == {1, 2}


def test_unknown_scenario_is_a_usage_error(synth_trace):
    with pytest.raises(UsageError, match="'fastest' is not one of"):
        scenario_critical_path(synth_trace, "fastest")


# -- CLI ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return write_synth(out, "cp", dp=2, pp=2, microbatches=4, steps=2, seed=3, slow_workers=[(0, 1, 2.0)])


def run_cli(*args):
    from graphwia.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_writes_json_and_timeline(synth_files, tmp_path):
    trace, meta = synth_files
    result = run_cli(
        "critical-path",
        trace,
        "--meta",
        meta,
        "--scenario",
        "nodelay",
        "--out",
        tmp_path / "cp.json",
        "--timeline",
        tmp_path / "cp.json.gz",
        "--steps",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert "(0,1)" in result.output
    data = json.loads((tmp_path / "cp.json").read_text())
    assert [s["step"] for s in data["steps"]] == [1]
    events = json.loads(gzip.decompress((tmp_path / "cp.json.gz").read_bytes()))
    assert any(e.get("cat") == "critical" for e in events)


def test_cli_whatif_scenario(synth_files, tmp_path):
    trace, meta = synth_files
    scenarios = tmp_path / "s.yaml"
    scenarios.write_text("scenarios:\n  - name: fixed\n    where: {dp_rank: [0], stage: [1]}\n    ideal: true\n")
    result = run_cli(
        "critical-path", trace, "--whatif", scenarios, "--scenario", "fixed", "--out", tmp_path / "cp.csv", "-q"
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "cp.csv")) > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "cp.txt"], "written as .json or .csv"),
        (["--out", "cp.json", "--timeline", "t.json"], "name it *.json.gz"),
        (["--out", "cp.json", "--scenario", "fastest"], "'fastest' is not one of"),
        (["--out", "cp.json", "--steps", "7"], "step 7 is not in the trace"),
    ],
)
def test_cli_errors_are_one_line(synth_files, tmp_path, args, message):
    trace, _ = synth_files
    args = [str(tmp_path / a) if a.startswith(("cp.", "t.")) else a for a in args]
    result = run_cli("critical-path", trace, *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
