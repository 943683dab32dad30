"""Property-based tests (hypothesis): no input makes graphwia raise an unhandled exception.

* Valid synthetic traces of random shapes (dp 1-3, pp 1-3, vpp 1-2, microbatches 1-4,
  steps 1-3) are analysed successfully, whatever their row order.
* Corrupted traces and metadata (rows dropped, duplicated or shuffled, cells set to NaN or
  nonsense, columns retyped or removed, files truncated or garbled) make ``graphwia
  analyze`` exit 0, 1 or 2 with no traceback; on failure it prints exactly one
  ``graphwia: error:`` line, and never an "unexpected" (unforeseen) one.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from graphwia.cli.main import app
from graphwia.optypes import ALL_OPTYPES
from graphwia.synth.generate import synthesize

RUNNER = CliRunner()
#: GRAPHWIA_PROPERTY_SCALE=20 runs 20x the examples, freshly random, to hunt for new failures;
#: the default is a fixed, fast sample (the suite must stay quick).
SCALE = float(os.environ.get("GRAPHWIA_PROPERTY_SCALE", "1"))
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=SCALE == 1)


def examples(n: int) -> int:
    return max(1, int(n * SCALE))


NUMERIC = ["dp_rank", "stage", "rank", "step", "start_ts", "duration", "seq_id", "mc", "gmc", "mb_id"]
COLUMNS = NUMERIC + ["optype"]


@st.composite
def shapes(draw) -> dict:
    """Arguments of a valid synthesize() call."""
    pp = draw(st.integers(1, 3))
    microbatches = draw(st.integers(1, 4))
    vpp = draw(st.sampled_from([1, 2])) if pp > 1 and microbatches % pp == 0 else 1
    return dict(
        dp=draw(st.integers(1, 3)),
        pp=pp,
        vpp=vpp,
        microbatches=microbatches,
        steps=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 3)),
        dp_overlap=draw(st.booleans()),
    )


@cache
def _synth(**shape) -> tuple[pd.DataFrame, dict]:
    return synthesize(name="p", **shape)


def synth(shape: dict) -> tuple[pd.DataFrame, dict]:
    frame, meta = _synth(**shape)
    return frame.copy(), dict(meta)


def run_analyze(frame: pd.DataFrame | None, meta: dict | str, fmt: str = "parquet", garble=None):
    """Write the trace (optionally garbling its bytes) and metadata; run ``graphwia analyze``."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trace = tmp / f"trace-p.{fmt}"
        if fmt == "csv":
            frame.to_csv(trace, index=False)
        else:
            frame.to_parquet(trace, index=False)
        if garble is not None:
            trace.write_bytes(garble(trace.read_bytes()))
        (tmp / "meta-p.yaml").write_text(meta if isinstance(meta, str) else yaml.safe_dump(meta))
        result = RUNNER.invoke(app, ["analyze", str(trace), "--out", str(tmp / "out"), "-q", "--no-plots"])
        results = sorted((tmp / "out").glob("result-*.json"))  # named after trial_name, which may be corrupted
        written = json.loads(results[0].read_text()) if result.exit_code == 0 else None
    return result, written


def assert_handled(result) -> None:
    """Exit 0, 1 or 2; no traceback; a failure is one foreseen ``graphwia: error:`` line."""
    output = result.stdout + result.stderr
    assert result.exit_code in (0, 1, 2), output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    if result.exit_code:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("graphwia: error: "), result.stderr
        assert not lines[0].startswith("graphwia: error: unexpected "), lines[0]


# -- valid traces ----------------------------------------------------------------------------------


@settings(max_examples=examples(20), **SETTINGS)
@given(shape=shapes(), fmt=st.sampled_from(["parquet", "csv"]), order_seed=st.integers(0, 2**16))
def test_valid_traces_of_any_shape_and_row_order_are_analysed(shape, fmt, order_seed):
    frame, meta = synth(shape)
    result, written = run_analyze(frame, meta, fmt)
    assert result.exit_code == 0, result.stderr
    # synth follows the timing model exactly; a job without any slowdown has M_S = M_W = 0/0, written as null
    assert not [line for line in result.stderr.splitlines() if "warning" in line and "written as null" not in line]
    assert np.isfinite(written["blocking_slowdown"]) and written["blocking_slowdown"] > 0
    assert set(written["step_t_base"]) == {str(s) for s in range(shape["steps"])}
    shuffled = frame.sample(frac=1.0, random_state=order_seed).reset_index(drop=True)
    again, rewritten = run_analyze(shuffled, meta, fmt)
    assert again.exit_code == 0, again.stderr
    assert rewritten == written  # rows may come in any order


# -- corrupted traces ------------------------------------------------------------------------------


def _row(draw, frame) -> int:
    return draw(st.integers(0, len(frame) - 1))


def drop_rows(draw, frame):
    rows = draw(st.lists(st.integers(0, len(frame) - 1), min_size=1, max_size=3))
    return frame.drop(index=frame.index[rows])


def duplicate_row(draw, frame):
    return pd.concat([frame, frame.iloc[[_row(draw, frame)]]], ignore_index=True)


def shuffle_rows(draw, frame):
    return frame.sample(frac=1.0, random_state=draw(st.integers(0, 2**16))).reset_index(drop=True)


def _column(draw, frame, among=COLUMNS) -> str:
    present = [c for c in among if c in frame.columns]
    return draw(st.sampled_from(present or list(frame.columns)))


def nan_cell(draw, frame):
    column = _column(draw, frame)
    frame = frame.copy()
    frame[column] = frame[column].astype(object if column == "optype" else float)
    frame.loc[frame.index[_row(draw, frame)], column] = np.nan
    return frame


def odd_value(draw, frame):
    """A cell set to a value of the right type but the wrong size or sign."""
    column = _column(draw, frame, NUMERIC)
    value = draw(st.sampled_from([-1, -1e-3, 0, 1, 2, 3, 7, 1e9, 2**31 + 5, 0.5, -0.3]))
    frame = frame.copy()
    if value != int(value) or abs(value) > 2**31 - 1:
        frame[column] = frame[column].astype(float)
    frame.loc[frame.index[_row(draw, frame)], column] = value
    return frame


def shift_time(draw, frame):
    """One op moved in time: reorders the sample, may break p2p matching or make a cycle."""
    frame = frame.copy()
    if "start_ts" in frame.columns:
        frame.loc[frame.index[_row(draw, frame)], "start_ts"] += draw(st.floats(-0.5, 0.5))
    return frame


def swap_optype(draw, frame):
    frame = frame.copy()
    if "optype" not in frame.columns:
        return frame
    frame["optype"] = frame["optype"].astype(str)
    frame.loc[frame.index[_row(draw, frame)], "optype"] = draw(st.sampled_from(list(ALL_OPTYPES) + ["", "fwd"]))
    return frame


def retype_column(draw, frame):
    column = _column(draw, frame)
    kind = draw(st.sampled_from(["str", "float", "bool", "category", "text"]))
    frame = frame.copy()
    values = frame[column]
    if kind == "text":
        values = values.astype(str)  # a column of text, as a CSV with one bad cell reads
        values.iloc[_row(draw, frame)] = "n/a"
        frame[column] = values
    elif kind == "category":
        frame[column] = values.astype(str).astype("category")
    elif kind == "bool" and column != "optype":
        frame[column] = values.astype(float) > 0
    else:
        frame[column] = (
            values.astype(str if kind in ("str", "bool") else float) if column != "optype" else values.astype(str)
        )
    return frame


def drop_column(draw, frame):
    return frame.drop(columns=[_column(draw, frame)])


FRAME_CORRUPTIONS = [
    drop_rows,
    duplicate_row,
    shuffle_rows,
    nan_cell,
    odd_value,
    shift_time,
    swap_optype,
    retype_column,
    drop_column,
]


def corrupt_meta(draw, meta):
    meta = dict(meta)
    field = draw(st.sampled_from(sorted(meta)))
    action = draw(st.sampled_from(["delete", "int", "text", "float"]))
    if action == "delete":
        del meta[field]
    elif action == "int":
        meta[field] = draw(st.integers(-1, 5))
    elif action == "text":
        meta[field] = "many"
    else:
        meta[field] = 1.5
    return meta


@settings(max_examples=examples(60), **SETTINGS)
@given(shape=shapes(), data=st.data())
def test_corrupted_traces_are_reported_not_raised(shape, data):
    frame, meta = synth(shape)
    for corruption in data.draw(
        st.lists(st.sampled_from(FRAME_CORRUPTIONS), min_size=1, max_size=3), label="corruptions"
    ):
        if len(frame) == 0 or len(frame.columns) == 0:
            break
        frame = corruption(data.draw, frame)
    if data.draw(st.booleans(), label="corrupt metadata"):
        meta = corrupt_meta(data.draw, meta)
    fmt = data.draw(st.sampled_from(["parquet", "csv"]), label="format")
    result, _ = run_analyze(frame, meta, fmt)
    assert_handled(result)


@st.composite
def garblers(draw):
    """A function damaging a file's bytes: truncation, flipped bytes, or appended junk."""
    kind = draw(st.sampled_from(["truncate", "flip", "append"]))
    fraction = draw(st.floats(0.0, 0.999))
    junk = draw(st.binary(min_size=1, max_size=16))

    def garble(raw: bytes) -> bytes:
        at = int(len(raw) * fraction)
        if kind == "truncate":
            return raw[:at]
        if kind == "flip":
            return raw[:at] + junk + raw[at + len(junk) :]
        return raw + junk

    return garble


@settings(max_examples=examples(40), **SETTINGS)
@given(shape=shapes(), fmt=st.sampled_from(["parquet", "csv"]), garble=garblers())
def test_damaged_files_are_reported_not_raised(shape, fmt, garble):
    frame, meta = synth(shape)
    result, _ = run_analyze(frame, meta, fmt, garble=garble)
    assert_handled(result)


@settings(max_examples=examples(25), **SETTINGS)
@given(text=st.text(max_size=80) | st.sampled_from(["", "[", "a: {", "dp_size: !!python/object:x {}", "- 1"]))
def test_garbage_metadata_is_reported_not_raised(text):
    frame, _ = synth(dict(dp=1, pp=1, vpp=1, microbatches=1, steps=1, seed=0, dp_overlap=True))
    result, _ = run_analyze(frame, text)
    assert_handled(result)
    assert result.exit_code != 0
