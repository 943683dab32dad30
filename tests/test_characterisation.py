"""M_S, M_W, exact per-worker S_w, the numbers behind the heatmaps, and ``graphwia reproduce``."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from conftest import DATA, published, real_analysis, requires_data
from typer.testing import CliRunner

from graphwia.cli.main import app
from graphwia.outputs.heatmap import HIGHLIGHT, highlighted, worker_grid
from graphwia.outputs.results import explanation_dict
from graphwia.reproduce import (
    M_ATOL,
    RESULT_RTOL,
    Mismatch,
    compare,
    compare_published,
    m_close,
    relative_close,
    table_lines,
)

M_KEYS = {"ms": ("rem", "add", "Ms"), "mw": ("rem", "add", "Mw")}
T_KEYS = ("trem", "tadd", "tori", "tideal")


# -- M_S and M_W against the published files ----------------------------------------
@pytest.mark.parametrize("kind", ["ms", "mw"])
def test_m_values_match_published(trace_name, kind):
    ours = explanation_dict(getattr(real_analysis(trace_name), kind), kind.capitalize())
    expected = published(kind, trace_name)
    assert set(ours) == set(expected)
    for key in M_KEYS[kind]:
        assert abs(ours[key] - expected[key]) <= 2e-3, (key, ours[key], expected[key])
    for key in T_KEYS:
        assert ours[key] == pytest.approx(expected[key], rel=1e-4), key


@requires_data
def test_m_values_name_the_published_causes():
    """ST: the last stage explains the slowdown; AR: the slow worker does (data/README.md)."""
    assert real_analysis("ST").Ms > 1.0 and real_analysis("ST").Mw < 0.2
    assert real_analysis("AR").Mw > 0.95 and abs(real_analysis("AR").Ms) < 0.05
    assert 0.6 < real_analysis("SE").Ms < 0.8


# -- exact per-worker attribution ----------------------------------------------------
def test_every_worker_has_an_exact_s_w(trace_name):
    analysis = real_analysis(trace_name)
    meta = analysis.trace.meta
    by_worker = analysis.blocking["worker"].overall
    expected_keys = {(d, s) for d in range(meta.dp_size) for s in range(meta.pp_size)}
    assert set(by_worker) == expected_keys
    table = {(r.dp_rank, r.stage): r.S_worker for r in analysis.workers.itertuples()}
    assert by_worker == pytest.approx(table, rel=1e-12)
    assert list(by_worker.values()) == sorted(by_worker.values(), reverse=True)  # worst first
    assert min(by_worker.values()) > 0.9


@requires_data
def test_exact_s_w_finds_the_slowed_worker_of_ar():
    by_worker = real_analysis("AR").blocking["worker"].overall
    worst, value = next(iter(by_worker.items()))
    assert worst == (0, 0) and value > 1.9
    assert sorted(by_worker.values())[-2] < 1.05


# -- the numbers behind the heatmaps -------------------------------------------------
def test_heatmap_grid_is_pp_down_dp_across(trace_name):
    analysis = real_analysis(trace_name)
    meta = analysis.trace.meta
    grid = worker_grid(analysis.workers)
    assert grid.shape == (meta.pp_size, meta.dp_size)
    assert list(grid.index) == list(range(meta.pp_size)) and list(grid.columns) == list(range(meta.dp_size))
    for (stage, dp_rank), value in grid.stack().items():
        expected = min(analysis.blocking["dp_rank"].overall[dp_rank], analysis.blocking["stage"].overall[stage])
        assert value == pytest.approx(expected, rel=1e-12)


@requires_data
def test_heatmap_highlights_match_the_paper():
    ar = highlighted(worker_grid(real_analysis("AR").workers))
    assert ar == [(0, 0)]  # exactly one worker, the slowed one
    st = real_analysis("ST")
    last = st.trace.meta.pp_size - 1
    assert highlighted(worker_grid(st.workers)) == [(d, last) for d in range(st.trace.meta.dp_size)]
    se = real_analysis("SE")
    se_hot = highlighted(worker_grid(se.workers))
    assert len(se_hot) >= 0.9 * len(se.workers)  # nearly all workers
    # The exact S_w heatmap of AR agrees: one worker only.
    assert highlighted(worker_grid(real_analysis("AR").workers, column="S_worker")) == [(0, 0)]


@requires_data
def test_heatmap_numbers_match_the_published_picture():
    """Published heatmap-ST.png reads 1, 0.98, 0.98, 1.2 down each column (2 significant digits)."""
    grid = worker_grid(real_analysis("ST").workers)
    for stage, shown in enumerate((1.0, 0.98, 0.98, 1.2)):
        for value in grid.loc[stage]:
            assert float(f"{value:.2g}") == shown
    assert HIGHLIGHT == 1.1


# -- comparing with published files --------------------------------------------------
def test_compare_counts_every_number_and_names_mismatches():
    expected = {"a": 1.0, "b": {"c": 2.0, "d": None, "e": "x"}, "f": 3.0}
    ours = {"a": 1.0 + 0.5e-4, "b": {"c": 2.0 * (1 + 2e-4), "d": None, "e": "x"}, "extra": 9.0}
    count, mismatches = compare(expected, ours, relative_close, "result-X.json")
    assert count == 5
    assert [(m.key, m.actual) for m in mismatches] == [("b.c", ours["b"]["c"]), ("f", None)]
    assert str(mismatches[0]).startswith("result-X.json: b.c: published 2.0")


def test_compare_null_against_number_disagrees():
    count, mismatches = compare({"x": None}, {"x": 1.0}, relative_close, "f")
    assert count == 1 and len(mismatches) == 1
    _, mismatches = compare({"x": {"y": 1.0}}, {"x": 1.0}, relative_close, "f")
    assert mismatches and mismatches[0].key == "x"


def test_m_values_compare_absolutely_t_values_relatively():
    assert m_close("Ms", -0.0012, -0.0012 + 0.9 * M_ATOL)
    assert not m_close("Mw", 1.0, 1.0 + 1.1 * M_ATOL)
    assert not m_close("rem", 0.0, 0.003)
    assert m_close("trem", 46.0, 46.0 * (1 + 0.9 * RESULT_RTOL))
    assert not m_close("tori", 46.0, 46.0 * (1 + 1.1 * RESULT_RTOL))


def test_table_reports_disagreement():
    from graphwia.reproduce import Comparison

    good = Comparison("ST", {"S": 1.1, "M_S": 1.2, "M_W": 0.0}, {"S": 1.1, "M_S": 1.2, "M_W": 0.0}, compared=10)
    bad = Comparison(
        "AR",
        {"S": 2.0, "M_S": 0.0, "M_W": 1.0},
        {"S": 1.9, "M_S": 0.0, "M_W": 1.0},
        compared=7,
        mismatches=[Mismatch("result-AR.json", "blocking_slowdown", 1.9, 2.0)],
    )
    lines = table_lines([good, bad])
    assert any(line.startswith("ST") and line.endswith("yes") for line in lines)
    assert any(line.startswith("AR") and "NO (1 differ)" in line for line in lines)
    assert "blocking_slowdown" in "\n".join(lines)
    assert lines[-1].startswith("1 of 17 published numbers disagree")
    assert table_lines([good])[-1].startswith("all 10 published numbers agree")


def test_every_published_number_is_reproduced(trace_name):
    comparison = compare_published(real_analysis(trace_name), DATA, name=trace_name)
    assert comparison.agrees, comparison.mismatches[:5]
    result = published("result", trace_name)
    assert comparison.compared > len(result["step_t_base"]) * 5  # per-step tables are compared too
    assert math.isclose(comparison.ours["S"], comparison.published["S"], rel_tol=1e-4)


# -- graphwia reproduce --------------------------------------------------------------
@pytest.fixture
def st_data(tmp_path):
    """A data directory with the published ST files (copied, so a test may tamper with them)."""
    if not (DATA / "trace-ST.parquet").is_file():
        pytest.skip("published traces not found")
    data = tmp_path / "data"
    data.mkdir()
    for name in ("trace-ST.parquet", "meta-ST.yaml", "result-ST.json", "ms-ST.json", "mw-ST.json"):
        shutil.copy(DATA / name, data / name)
    return data


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_reproduce_agrees_and_writes_outputs(st_data, tmp_path):
    run = invoke("reproduce", "--data", st_data, "--out", tmp_path / "out", "--trace", "ST")
    assert run.exit_code == 0, run.output
    assert "all" in run.output and "published numbers agree" in run.output
    row = next(line for line in run.output.splitlines() if line.startswith("ST "))
    assert row.endswith("yes") and "1.1787" in row and "1.2194" in row
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {
        "result-ST.json",
        "ms-ST.json",
        "mw-ST.json",
        "heatmap-ST.png",
        "report-ST.html",
        "ideal-timeline-ST.json.gz",
    } <= names


def test_cli_reproduce_fails_on_a_disagreement(st_data, tmp_path):
    ms = json.loads((st_data / "ms-ST.json").read_text())
    ms["Ms"] += 0.01  # beyond the 2e-3 tolerance
    (st_data / "ms-ST.json").write_text(json.dumps(ms))
    run = invoke("reproduce", "--data", st_data, "--out", tmp_path / "out", "--trace", "ST", "--no-plots")
    assert run.exit_code == 1
    assert "NO (1 differ)" in run.output and "ms-ST.json: Ms" in run.output
    assert "1 of" in run.output and "disagree" in run.output


def test_cli_reproduce_names_a_missing_published_file(st_data, tmp_path):
    (st_data / "mw-ST.json").unlink()
    run = invoke("reproduce", "--data", st_data, "--out", tmp_path / "out", "--trace", "ST")
    assert run.exit_code == 2
    assert f"--data {st_data}: mw-ST.json not found" in run.output
    assert "Traceback" not in run.output and len(run.output.strip().splitlines()) == 1
