"""Analysing some steps only (SPEC §5, "Analysing some steps only"), on windows of the real traces.

The schedule comes from the trace's first step and weights are as recorded; every typical value
and mean is over the selected steps. So a window that holds the trace's first step gives exactly
the analysis of the trace cut down to it, and a window without it uses typical values computed
over its own ops alone. ``typical_from="all"`` takes them from every step instead.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA, real_analysis, real_trace
from typer.testing import CliRunner

import graphwia
from graphwia import optypes as T
from graphwia.analyses.critical_path import scenario_critical_path
from graphwia.errors import UsageError
from graphwia.outputs.results import explanation_dict, result_dict
from graphwia.trace.steps import checked_steps

#: Per trace: a window holding its first step and one without it (step ranges, inclusive).
WINDOWS = {"ST": ((23, 36), (259, 288)), "SE": ((16, 39), (403, 437)), "AR": ((16, 39), (404, 439))}


def window(trace: graphwia.Trace, low: int, high: int) -> list[int]:
    return [int(s) for s in trace.steps if low <= s <= high]


def cut(trace: graphwia.Trace, steps: list[int]) -> graphwia.Trace:
    """The trace with only ``steps`` left, as a user would write it out."""
    ops = trace.ops.drop(columns="end")
    return graphwia.Trace.from_frame(ops[ops["step"].isin(steps)], trace.meta.to_dict())


def numbers(analysis: graphwia.Analysis) -> dict[str, float]:
    """Every number of the published result, M_S and M_W files of an analysis, by path."""
    out: dict[str, float] = {}

    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[path] = value

    walk(result_dict(analysis), "result")
    walk(explanation_dict(analysis.ms, "Ms"), "ms")
    walk(explanation_dict(analysis.mw, "Mw"), "mw")
    return out


def test_a_window_from_the_first_step_is_the_cut_trace(trace_name):
    trace = real_trace(trace_name)
    steps = window(trace, *WINDOWS[trace_name][0])
    assert steps[0] == trace.steps[0] and len(steps) < len(trace.steps)
    per_worker = trace_name == "ST"  # exact S_w of every worker: one scenario each, SE has 64
    ours = numbers(graphwia.analyze(trace, steps=steps, per_worker=per_worker))
    theirs = numbers(graphwia.analyze(cut(trace, steps), per_worker=per_worker))
    assert len(ours) > 100 and ours.keys() == theirs.keys()
    differ = [path for path in ours if ours[path] != theirs[path]]
    assert not differ, f"{len(differ)} of {len(ours)} numbers differ, e.g. {differ[:3]}"


def test_a_window_without_the_first_step_takes_typical_values_from_its_own_ops(trace_name):
    trace = real_trace(trace_name)
    steps = window(trace, *WINDOWS[trace_name][1])
    assert trace.steps[0] not in steps
    analysis = graphwia.analyze(trace, steps=steps, per_worker=False)
    assert analysis.typical_from == "selected" and list(analysis.steps) == steps

    # SPEC §5.3 over the window's ops, computed here: weights (durations and transfer times, as
    # recorded) from the whole-trace analysis, restricted to the window.
    full = real_analysis(trace_name)
    in_window = np.isin(full.dag.table["step"], steps)
    optype = full.dag.table["optype"]
    expected = {}
    for name in T.ALL_OPTYPES:
        values = full.weights.weight[in_window & (optype == T.OPTYPE_CODE[name])]
        if len(values):
            expected[name] = np.mean(values) if name in T.COMPUTE_OPTYPES else np.median(values)
    assert analysis.typical.keys() == expected.keys()
    for name, value in expected.items():
        assert analysis.typical[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    # local ops: the mean duration straight from the trace rows
    ops = trace.ops
    rows = ops[ops["step"].isin(steps) & ops["optype"].astype(str).isin(["forward-compute", "backward-compute"])]
    for name, duration in rows.groupby(rows["optype"].astype(str), observed=True)["duration"].mean().items():
        assert analysis.typical[name] == pytest.approx(duration, rel=1e-9)
    # and they are the ones the ideal uses
    ideal = np.array([analysis.typical.get(name, np.nan) for name in T.ALL_OPTYPES])[analysis.dag.table["optype"]]
    np.testing.assert_array_equal(analysis.ideal, ideal)
    # which is not what the whole trace would give
    everywhere = graphwia.analyze(trace, steps=steps, typical_from="all", per_worker=False)
    assert everywhere.typical == full.typical and everywhere.typical != analysis.typical
    assert everywhere.slowdown != pytest.approx(analysis.slowdown, rel=1e-6)


def test_cli_steps_and_typical_from(tmp_path):
    import json

    from graphwia.cli.main import app

    trace = real_trace("ST")
    steps = window(trace, *WINDOWS["ST"][0])
    args = ["analyze", str(DATA / "trace-ST.parquet"), "--no-plots", "--no-per-worker", "--steps", "23-36"]
    run = CliRunner().invoke(app, args + ["--out", str(tmp_path / "selected")])
    assert run.exit_code == 0, run.output
    assert "typical weights     from the analysed steps only" in run.stdout
    written = json.loads((tmp_path / "selected" / "result-ST.json").read_text())
    assert written["blocking_slowdown"] == result_dict(graphwia.analyze(cut(trace, steps)))["blocking_slowdown"]

    run = CliRunner().invoke(app, args + ["--typical-from", "all", "--out", str(tmp_path / "all")])
    assert run.exit_code == 0, run.output
    assert "typical weights     from all 32 steps of the trace" in run.stdout
    written = json.loads((tmp_path / "all" / "result-ST.json").read_text())
    expected = result_dict(graphwia.analyze(trace, steps=steps, typical_from="all"))
    assert written["blocking_slowdown"] == pytest.approx(expected["blocking_slowdown"], rel=1e-12)

    run = CliRunner().invoke(
        app, ["analyze", str(DATA / "trace-ST.parquet"), "--no-plots", "--out", str(tmp_path / "whole")]
    )
    assert run.exit_code == 0 and "typical weights" not in run.stdout  # every step analysed: nothing to say


# -- steps as the API takes them --------------------------------------------------------------------


def test_a_bare_step_number_works_wherever_steps_are_taken():
    from graphwia.synth.generate import synthesize

    frame, meta = synthesize(dp=2, pp=2, microbatches=2, steps=3, seed=2)
    trace = graphwia.Trace.from_frame(frame, meta)
    assert list(graphwia.analyze(trace, steps=1, per_worker=False).steps) == [1]
    assert list(graphwia.analyze(trace, steps=np.int64(1), per_worker=False).steps) == [1]
    dag = graphwia.build_dag(trace, steps=2)
    assert list(dag.steps) == [2] and list(graphwia.build_dag(trace).select_steps(0).steps) == [0]
    assert {node["step"] for _, node in graphwia.build_dag(trace).to_networkx(steps=1).nodes(data=True)} == {1}
    assert scenario_critical_path(trace, "ideal", steps=2).steps == [2]
    assert list(checked_steps(2, trace.steps, "t")) == [2]


def test_critical_paths_of_some_steps_take_typical_weights_from_them(tmp_path):
    from graphwia.cli.main import app
    from graphwia.synth.generate import synthesize, write_synth

    frame, meta = synthesize(dp=2, pp=2, microbatches=2, steps=3, seed=4, slow_workers=[(0, 1, 1.5)])
    trace = graphwia.Trace.from_frame(frame, meta)
    part = scenario_critical_path(trace, "ideal", steps=[0, 1])
    assert np.array_equal(part.weight, scenario_critical_path(cut(trace, [0, 1]), "ideal").weight)
    everywhere = scenario_critical_path(trace, "ideal", steps=[0, 1], typical_from="all")
    full = scenario_critical_path(trace, "ideal")
    assert np.array_equal(everywhere.weight, full.weight[full.dag.table["step"] <= 1])
    assert not np.array_equal(everywhere.weight, part.weight)

    write_synth(tmp_path, "job", dp=2, pp=2, microbatches=2, steps=3, seed=4, slow_workers=[(0, 1, 1.5)])
    for choice in ("selected", "all"):
        out = tmp_path / f"cp-{choice}.json"
        run = CliRunner().invoke(
            app,
            [
                "critical-path",
                str(tmp_path / "trace-job.parquet"),
                "--scenario",
                "ideal",
                "--steps",
                "1-2",
                "--typical-from",
                choice,
                "--out",
                str(out),
                "-q",
            ],
        )
        assert run.exit_code == 0, run.output
    assert (tmp_path / "cp-selected.json").read_text() != (tmp_path / "cp-all.json").read_text()


@pytest.mark.parametrize(
    "steps, named",
    [
        ("12", "'12'"),
        (1.0, "1.0"),
        ([1, 2.5], "2.5"),
        (True, "True"),
        ([], "no steps were selected"),
        (7, "7"),
    ],
)
def test_steps_that_are_not_step_numbers_are_refused(steps, named):
    with pytest.raises(UsageError) as err:
        checked_steps(steps, np.arange(3), "t")
    assert named in str(err.value) and str(err.value).startswith("t: ")


def test_typical_from_is_checked():
    from graphwia.synth.generate import synthesize

    frame, meta = synthesize(dp=1, pp=2, microbatches=2, steps=2, seed=2)
    with pytest.raises(UsageError, match="typical_from 'some' is not one of selected, all"):
        graphwia.analyze(graphwia.Trace.from_frame(frame, meta), steps=[1], typical_from="some")
