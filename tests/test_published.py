"""graphwia reproduces the published result files of the three real traces (SPEC §6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import published, real_analysis, real_trace, requires_data

import graphwia
from graphwia.outputs.results import result_dict

REL = 1e-4


def assert_same(ours, theirs, path="result"):
    """Every published field exists in ours with the same value (numbers within REL)."""
    if theirs is None:
        assert ours is None, f"{path}: expected null, got {ours!r}"
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{path}: expected a mapping, got {ours!r}"
        assert set(ours) == set(theirs), f"{path}: keys differ: {set(ours) ^ set(theirs)}"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, float):
        assert math.isclose(ours, theirs, rel_tol=REL), f"{path}: {ours} != {theirs}"
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


def published_fields(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "blocking_decompose_by_worker"}


def test_every_published_number(trace_name):
    analysis = real_analysis(trace_name)
    expected = published("result", trace_name)
    ours = published_fields(result_dict(analysis))
    assert set(ours) == set(expected)
    assert_same(ours, expected)
    assert not analysis.warnings  # base simulation reproduces the trace


@requires_data
def test_steps_subset_keeps_per_step_numbers():
    """With typical_from="all" a subset of steps keeps the per-step numbers of the full run."""
    expected = published("result", "AR")
    steps = [16, 21, 27, 404, 1238]
    result = result_dict(graphwia.analyze(real_trace("AR"), steps=steps, typical_from="all"))
    keys = [str(s) for s in steps]
    for field in ("step_t_base", "step_t_nodelay", "step_t_noblk", "blocking_step_slowdown", "launch_step_slowdown"):
        assert list(result[field]) == keys or set(result[field]) == set(keys)
        assert_same(result[field], {k: expected[field][k] for k in keys}, field)
    for name in ("dp_rank", "stage", "optype"):
        field = f"blocking_decompose_by_{name}_per_step"
        assert_same(result[field], {k: expected[field][k] for k in keys}, field)
    # Aggregates are over the subset: S = mean no-delay span / mean ideal step time.
    nodelay = np.mean([expected["step_t_nodelay"][k] for k in keys])
    ideal = np.mean([expected["step_t_noblk"][k] for k in keys])
    assert result["blocking_slowdown"] == pytest.approx(nodelay / ideal, rel=REL)
    # The ideal step time is the same in every step, so S_G over a subset is the mean of its per-step S_G.
    for group, value in result["blocking_decompose_by_stage"].items():
        per_step = np.mean([expected["blocking_decompose_by_stage_per_step"][k][group] for k in keys])
        assert value == pytest.approx(per_step, rel=REL)


@requires_data
def test_shuffled_rows_give_the_same_result():
    trace = real_trace("ST")
    shuffled = graphwia.Trace.from_frame(
        trace.ops.drop(columns="end").sample(frac=1.0, random_state=7), trace.meta.to_dict()
    )
    assert_same(published_fields(result_dict(graphwia.analyze(shuffled))), published("result", "ST"))


@requires_data
def test_cli_analyze_writes_the_published_result(tmp_path):
    import json

    from conftest import DATA
    from typer.testing import CliRunner

    from graphwia.cli.main import app

    run = CliRunner().invoke(
        app,
        [
            "analyze",
            str(DATA / "trace-ST.parquet"),
            "--meta",
            str(DATA / "meta-ST.yaml"),
            "--out",
            str(tmp_path),
            "--no-plots",
            "--steps",
            "23",
            "25-36",
        ],
    )
    assert run.exit_code == 0, run.output
    assert "slowdown S" in run.output
    written = json.loads((tmp_path / "result-ST.json").read_text())
    assert set(written["step_t_base"]) == {"23", "25", "33", "34", "36"}
    expected = published("result", "ST")
    assert_same(written["step_t_nodelay"], {k: expected["step_t_nodelay"][k] for k in written["step_t_nodelay"]})
