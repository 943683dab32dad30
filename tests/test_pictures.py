"""Heatmap pictures and the recorded / ideal timelines written by ``write_outputs``."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, real_analysis, requires_data

from graphwia import Trace, analyze
from graphwia.outputs.heatmap import MAX_COLUMNS, heatmap_figure, highlighted, worker_grid, write_heatmap
from graphwia.outputs.job import ideal_timeline_events, observed_timeline_events, output_paths, write_outputs
from graphwia.outputs.timeline import CATEGORIES, STEP_GAP
from graphwia.synth.generate import synthesize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def workers_table(dp: int, pp: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(d, s, 0.95 + 0.6 * rng.random()) for d in range(dp) for s in range(pp)]
    return pd.DataFrame(rows, columns=["dp_rank", "stage", "score"]).sample(frac=1.0, random_state=seed)


@pytest.fixture(scope="module")
def synthetic():
    """A small dp 2 × pp 2 job with one slow worker, fully analysed."""
    frame, meta = synthesize(dp=2, pp=2, microbatches=4, steps=3, seed=1, slow_workers=[(1, 1, 1.6)])
    return analyze(Trace.from_frame(frame, meta))


# -- heatmaps ------------------------------------------------------------------------
def test_worker_grid_orders_rows_and_columns_and_marks_missing():
    table = workers_table(3, 2).iloc[1:]  # one worker missing
    grid = worker_grid(table)
    assert list(grid.index) == [0, 1] and list(grid.columns) == [0, 1, 2]
    assert grid.isna().sum().sum() == 1
    for row in table.itertuples():
        assert grid.loc[row.stage, row.dp_rank] == row.score


def test_highlighted_lists_cells_at_or_above_the_threshold():
    grid = pd.DataFrame([[1.0, 1.1], [1.2, np.nan]], index=[0, 1], columns=[0, 1])
    assert highlighted(grid) == [(1, 0), (0, 1)]  # (dp_rank, stage), row by row
    assert highlighted(grid, threshold=1.15) == [(0, 1)]


def cell_texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


@pytest.mark.parametrize("dp", [2, 64])
def test_heatmap_annotates_every_cell_and_stays_readable(dp):
    pp = 4
    grid = worker_grid(workers_table(dp, pp))
    fig = heatmap_figure(grid, title="title", label="score")
    panels = [ax for ax in fig.axes if ax.get_ylabel() == "PP rank"]
    assert len(panels) == -(-dp // MAX_COLUMNS)  # wide jobs wrap into panels
    texts = cell_texts(fig)
    assert len(texts) == dp * pp
    assert sorted(texts) == sorted(f"{v:.2f}" for v in grid.to_numpy().ravel())
    # PP rank 0 on top, DP rank across, ranks in order.
    first = panels[0]
    assert first.yaxis_inverted()
    assert [t.get_text() for t in first.get_yticklabels()] == [str(s) for s in range(pp)]
    shown = [t.get_text() for ax in panels for t in ax.get_xticklabels()]
    assert shown == [str(d) for d in range(dp)]
    # Every cell at least as large as its 7.5 pt label, and the figure no wider than a page-ish 16 in.
    width, _ = fig.get_size_inches()
    assert width <= 16
    cell_width_in = first.get_position().width * width / min(dp, MAX_COLUMNS)
    assert cell_width_in >= 0.3


def test_heatmap_colours_follow_the_1_to_1_5_scale():
    grid = pd.DataFrame([[1.0, 1.5, 2.0, 0.9]], index=[0], columns=[0, 1, 2, 3])
    fig = heatmap_figure(grid)
    mesh = fig.axes[0].collections[0]
    assert mesh.norm.vmin == 1.0 and mesh.norm.vmax == 1.5
    colours = mesh.to_rgba(np.ma.masked_invalid(grid.to_numpy()).ravel())
    assert np.allclose(colours[0], colours[3])  # below 1.0: the colour of 1.0
    assert np.allclose(colours[1], colours[2])  # above 1.5: the colour of 1.5
    assert colours[1][0] > colours[1][1] + 0.3  # dark red at 1.5


def test_write_heatmap_writes_a_png_atomically(tmp_path):
    path = write_heatmap(tmp_path / "h.png", worker_grid(workers_table(4, 2)), title="t")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["h.png"]  # no temporary left behind


# -- timelines -----------------------------------------------------------------------
def complete(events):
    return [e for e in events if e["ph"] == "X"]


def offsets(analysis, end):
    steps = len(analysis.dag.steps)
    longest = end.max()
    return np.repeat(np.arange(steps) * longest * (1 + STEP_GAP), analysis.dag.ops_per_step)


def test_ideal_timeline_times_are_the_simulated_times(synthetic):
    events = ideal_timeline_events(synthetic)
    bars = complete(events)
    assert len(bars) == synthetic.dag.n_ops  # one complete event per op instance
    sim = synthetic.simulations["ideal"]
    start, end = sim.start[:, 0], sim.end[:, 0]
    shift = offsets(synthetic, end)
    ts = np.array([e["ts"] for e in bars])
    dur = np.array([e["dur"] for e in bars])
    np.testing.assert_allclose(ts + dur, (end + shift) * 1e6, rtol=0, atol=1e-3)  # every bar ends at its end
    member = synthetic.dag.ops["barrier"].to_numpy() >= 0
    assert member.any() and (~member).any()
    # a group member lasts its ideal transfer time; a local op runs from its simulated start
    np.testing.assert_allclose(dur[member], synthetic.ideal[member] * 1e6, atol=1e-3)
    np.testing.assert_allclose(ts[~member], (start[~member] + shift[~member]) * 1e6, atol=1e-3)


def test_timelines_name_processes_and_threads(synthetic):
    for events in (ideal_timeline_events(synthetic), observed_timeline_events(synthetic)):
        processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
        threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
        assert processes == {0: "DP rank 0", 1: "DP rank 1"}
        assert len(threads) == len(synthetic.workers) * len(CATEGORIES)
        used = {(e["pid"], e["tid"]) for e in complete(events)}
        assert used <= set(threads)  # every bar sits on a named thread
        compute = {threads[key] for key in used if "compute" in threads[key]}
        assert compute == {"PP rank 0, TP rank 0, compute", "PP rank 1, TP rank 0, compute"}


def test_recorded_timeline_keeps_the_recorded_ends(synthetic):
    bars = complete(observed_timeline_events(synthetic))
    ops = synthetic.dag.ops
    end = ops["end"].to_numpy()
    ts_end = np.array([e["ts"] + e["dur"] for e in bars])
    np.testing.assert_allclose(ts_end, (end + offsets(synthetic, end)) * 1e6, atol=1e-3)
    assert [e["name"] for e in bars] == ops["optype"].astype(str).tolist()


def event_frame(events):
    """Bars keyed by (process, thread name, op, step, seq_id), times relative to the step."""
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    bars = complete(events)
    frame = pd.DataFrame(
        {
            "pid": [e["pid"] for e in bars],
            "thread": [names[e["pid"], e["tid"]] for e in bars],
            "name": [e["name"] for e in bars],
            "step": [e["args"]["step"] for e in bars],
            "seq": [e["args"]["seq_id"] for e in bars],
            "ts": [e["ts"] for e in bars],
            "dur": [e["dur"] for e in bars],
        }
    )
    frame["rel"] = frame["ts"] - frame.groupby("step")["ts"].transform("min")
    return frame.set_index(["pid", "thread", "name", "step", "seq"]).sort_index()


@requires_data
@pytest.mark.parametrize("kind", ["ideal-timeline", "timeline"])
def test_st_timelines_match_the_published_ones(kind):
    analysis = real_analysis("ST")
    ours = event_frame(
        ideal_timeline_events(analysis) if kind == "ideal-timeline" else observed_timeline_events(analysis)
    )
    theirs = event_frame(json.load(gzip.open(DATA / f"{kind}-ST.json.gz")))
    assert ours.index.equals(theirs.index)
    np.testing.assert_allclose(ours["dur"], theirs["dur"], atol=1.0)  # microseconds
    np.testing.assert_allclose(ours["rel"], theirs["rel"], atol=1.0)


# -- write_outputs -------------------------------------------------------------------
def test_write_outputs_writes_every_file(synthetic, tmp_path):
    written = write_outputs(synthetic, tmp_path)
    paths = output_paths(tmp_path, synthetic.name)
    assert sorted(written) == sorted(paths.values())
    assert paths["heatmap"].read_bytes()[:8] == PNG_MAGIC
    assert paths["heatmap-worker"].read_bytes()[:8] == PNG_MAGIC
    events = json.loads(gzip.decompress(paths["ideal-timeline"].read_bytes()))
    assert len(complete(events)) == synthetic.dag.n_ops
    assert paths["report"].read_text().startswith("<!doctype html>")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind


def test_no_plots_writes_only_the_results(synthetic, tmp_path):
    written = write_outputs(synthetic, tmp_path, plots=False)
    assert sorted(p.name for p in written) == sorted(
        f"{k}-{synthetic.name}.json" for k in ("result", "ms", "mw", "causes")
    )
    assert (
        sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".graphwia"))  # not its bookkeeping
        == sorted(p.name for p in written)
    )


def test_without_per_worker_attribution_there_is_no_worker_heatmap(tmp_path):
    frame, meta = synthesize(dp=2, pp=2, microbatches=4, steps=2, seed=3)
    analysis = analyze(Trace.from_frame(frame, meta), per_worker=False)
    names = {p.name for p in write_outputs(analysis, tmp_path)}
    assert f"heatmap-{analysis.name}.png" in names and f"heatmap-worker-{analysis.name}.png" not in names
