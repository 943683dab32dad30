"""The fast timeline writer: ``timeline_json`` is the text ``json.dumps`` makes of ``timeline_events``.

``write_timelines`` no longer builds a dict per op; these tests pin that the
files hold exactly the events the dict path returns (same order, keys and
values, floats bit for bit), with the critical-path overlay too, for ops
without a chunk or microbatch (null), for floats repr lays out unusually and
for non-finite times. No timing here: timing is ``make bench``'s job.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graphwia import Trace, analyze
from graphwia.outputs.job import (
    _ideal_bars,
    _observed_bars,
    ideal_timeline_events,
    observed_timeline_events,
    write_timelines,
)
from graphwia.outputs.timeline import _float_json, timeline_events, timeline_json, write_timeline_json
from graphwia.synth.generate import synthesize
from graphwia.utils.io import all_or_nothing

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def job():
    frame, meta = synthesize(dp=2, pp=2, microbatches=3, steps=2, seed=1, name="t")
    return analyze(Trace.from_frame(frame, meta))


def dumped(events) -> bytes:
    """What the dict path writes: ``write_json`` dumps with these options."""
    return json.dumps(events, indent=None, allow_nan=True).encode()


def marked_overlay(dag, seed: int = 0):
    """A random mask and two chains of ops in it, one per step, as the critical-path writer passes them."""
    rng = np.random.default_rng(seed)
    flows = [
        np.sort(rng.choice(dag.ops_per_step, 6, replace=False)) + step * dag.ops_per_step
        for step in range(len(dag.steps))
    ]
    marked = rng.random(dag.n_ops) < 0.3
    for chain in flows:
        marked[chain] = True
    return marked, flows


@pytest.mark.parametrize("bars", [_observed_bars, _ideal_bars], ids=["observed", "ideal"])
def test_json_is_the_dumped_events(job, bars):
    start, end = bars(job)
    events = timeline_events(job.dag, start, end)
    text = timeline_json(job.dag, start, end)
    assert text == dumped(events)
    assert json.loads(text) == events


def test_marked_ops_and_flow_arrows(job):
    start, end = _observed_bars(job)
    marked, flows = marked_overlay(job.dag)
    events = timeline_events(job.dag, start, end, marked=marked, flows=flows)
    assert {"critical", "critical-path"} <= {e.get("cat") for e in events}
    assert timeline_json(job.dag, start, end, marked=marked, flows=flows) == dumped(events)


def test_no_chunk_or_microbatch_is_null(job):
    table = job.dag.table
    chunk, mb = table["chunk"].copy(), table["mb_id"].copy()
    chunk[[0, 5]], mb[[0, 7]] = -1, -3  # any value below 0 means "none"
    dag = dataclasses.replace(job.dag, table=table.with_columns({"chunk": chunk, "mb_id": mb}))
    start, end = _observed_bars(job)
    events = timeline_events(dag, start, end)
    assert events[0]["args"]["model_chunk"] is None and events[7]["args"]["mb_id"] is None
    assert timeline_json(dag, start, end) == dumped(events)


def test_unusual_and_non_finite_times(job):
    """Integral, tiny, huge, negative zero, NaN and infinite times are written as json writes them."""
    start, end = (values.copy() for values in _observed_bars(job))
    start[:9] = [0.0, -0.0, 1.0, 1e-11, 2.5e-7, 1e12, np.nan, -np.inf, 3.0]
    end[:9] = [1e-10, 0.0, 2.0, 1e-10, 3e-7, 2e12, 1.0, 1.0, 3.0]  # step 1 starts 2.2e18 µs in
    text = timeline_json(job.dag, start, end)
    assert text == dumped(timeline_events(job.dag, start, end))
    assert b"NaN" in text and b"Infinity" in text


def test_floats_read_back_bit_for_bit():
    """Any finite double, NaN and ±infinity: the same text as json.dumps (repr), so the same float."""
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**64, 20_000, dtype=np.uint64, endpoint=False).view(np.float64)
    scaled = rng.random(20_000) * 10.0 ** rng.integers(-8, 20, 20_000)
    special = [
        0.0,
        -0.0,
        1e-4,
        9.999999999999999e-05,
        1e16,
        1e16 - 2,
        5e-324,
        1e308,
        0.1,
        1 / 3,
        123.0,
        np.nan,
        np.inf,
        -np.inf,
    ]
    values = np.concatenate([bits, scaled, special])
    text = _float_json(values)
    expected = [json.dumps(value, allow_nan=True) for value in values.tolist()]
    assert len(text) == len(values)
    assert text.to_pylist() == expected


def test_written_files_hold_the_events(job, tmp_path):
    observed, ideal = tmp_path / "timeline-t.json.gz", tmp_path / "ideal-timeline-t.json.gz"
    assert write_timelines(job, observed, ideal) == [observed, ideal]
    assert json.loads(gzip.decompress(observed.read_bytes())) == observed_timeline_events(job)
    assert json.loads(gzip.decompress(ideal.read_bytes())) == ideal_timeline_events(job)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([observed.name, ideal.name])  # no temporaries


def test_write_is_atomic(job, tmp_path):
    path = tmp_path / "timeline.json.gz"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), all_or_nothing():
        write_timeline_json(path, timeline_json(job.dag, *_observed_bars(job)))
        raise RuntimeError("a later output fails")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_fast_path_imports_no_pandas():
    """pyarrow's own conversions import pandas (~0.3 s): timeline_json goes through buffers instead."""
    code = (
        "import sys\n"
        "from graphwia import analyze, load_trace\n"
        "from graphwia.outputs.job import _observed_bars\n"
        "from graphwia.outputs.timeline import timeline_json\n"
        "analysis = analyze(load_trace('examples/data/trace-demo.parquet'), per_worker=False)\n"
        "assert timeline_json(analysis.dag, *_observed_bars(analysis)).startswith(b'[{')\n"
        "print('pandas' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().splitlines()[-1] == "False"
