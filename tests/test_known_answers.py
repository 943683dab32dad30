"""Known answers on synthetic jobs (issue 5): injected causes are found, healthy jobs are clean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import graphwia
from graphwia.outputs.heatmap import worker_grid
from graphwia.outputs.summary import verdict
from graphwia.synth.generate import synthesize

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data"


def analyze(**kwargs):
    frame, meta = synthesize(seed=11, steps=3, **kwargs)
    return graphwia.analyze(graphwia.Trace.from_frame(frame, meta))


@pytest.mark.parametrize(
    "layout",
    [
        dict(dp=4, pp=4, microbatches=8),
        dict(dp=2, pp=4, vpp=2, microbatches=8),  # interleaved 1F1B
        dict(dp=4, pp=1, microbatches=4),  # no pipeline
        dict(dp=2, pp=4, microbatches=8, dp_overlap=False),
    ],
)
def test_healthy_jobs_have_no_significant_slowdown(layout):
    analysis = analyze(**layout)
    assert analysis.warnings == []
    assert analysis.slowdown <= 1.10
    assert "no significant straggling" in verdict(analysis)


def test_one_slow_worker_is_found():
    analysis = analyze(dp=4, pp=4, microbatches=8, slow_workers=[(2, 1, 1.5)])
    assert analysis.slowdown >= 1.2
    assert analysis.Mw >= 0.8
    grid = worker_grid(analysis.workers, column="score")  # the numbers behind the heatmap
    stage, dp_rank = np.unravel_index(np.nanargmax(grid.to_numpy()), grid.shape)
    assert (int(grid.columns[dp_rank]), int(grid.index[stage])) == (2, 1)
    exact = worker_grid(analysis.workers, column="S_worker")
    stage, dp_rank = np.unravel_index(np.nanargmax(exact.to_numpy()), exact.shape)
    assert (int(exact.columns[dp_rank]), int(exact.index[stage])) == (2, 1)
    assert "individual worker problem" in verdict(analysis) and "dp_rank 2, stage 1" in verdict(analysis)


def test_slow_last_stage_is_found():
    analysis = analyze(dp=4, pp=4, microbatches=8, slow_stage=(3, 1.5))
    assert analysis.Ms >= 0.8
    by_stage = analysis.blocking["stage"].overall
    assert by_stage[3] == max(by_stage.values())
    assert "stage partitioning imbalance" in verdict(analysis)


def test_sequence_length_imbalance_is_neither_worker_nor_stage():
    analysis = analyze(dp=8, pp=2, microbatches=8, seqlen_cv=0.4)
    assert analysis.slowdown >= 1.1
    assert analysis.Mw < 0.5 and analysis.Ms < 0.5
    assert [c.cause for c in analysis.causes.ranked] == ["sequence-length"]
    assert verdict(analysis).startswith("sequence-length imbalance")


def test_embedded_demo_shows_its_slow_worker():
    trace = graphwia.load_trace(EXAMPLE / "trace-demo.parquet", EXAMPLE / "meta-demo.yaml")
    analysis = graphwia.analyze(trace)
    assert analysis.slowdown > 1.1
    assert verdict(analysis).startswith("individual worker problem: the worst 1 of 16 workers (dp_rank 2, stage 1)")
