"""The analysis path stays lean: no pandas on it, and arrow columns read exactly (issue 7).

pandas costs more to import (~0.3 s) than analysing a small trace takes, so the
``analyze`` path reads parquet through pyarrow's buffers and works on numpy
tables. These tests pin that down structurally (no timing here: timing is
``make bench``'s job) and check the buffer reader against pyarrow's own
conversion on the awkward cases: nulls, sliced arrays, several chunks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from graphwia.synth.generate import synthesize
from graphwia.trace.optable import load_trace, read_columns
from graphwia.utils.arrow import to_numpy

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "data" / "trace-demo.parquet"
#: Libraries the analysis path must not import (typer >= 0.29 imports pydantic to parse arguments;
#: graphwia itself never does: see test_the_library_imports_no_pydantic).
HEAVY = ("pandas", "matplotlib", "networkx", "numba", "msgspec")


def heavy_modules_after(argv: list[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of ``heavy`` a fresh interpreter has imported after running ``graphwia argv``."""
    code = (
        "import json, sys\n"
        "from graphwia.cli.main import app\n"
        f"try:\n    app({argv!r})\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])  # the list printed last


def test_analyze_without_pictures_imports_no_heavy_library(tmp_path):
    assert heavy_modules_after(["analyze", str(DEMO), "--out", str(tmp_path), "--no-plots", "-q"]) == []
    assert (tmp_path / "result-demo.json").is_file()


def test_the_library_imports_no_pydantic():
    code = (
        "import sys, graphwia\n"
        f"a = graphwia.analyze(graphwia.open_trace({str(DEMO)!r}))\n"
        "print('pydantic' in sys.modules, 'typer' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "False"]


def test_whatif_imports_no_heavy_library():
    scenarios = ROOT / "examples" / "scenarios.yaml"
    assert heavy_modules_after(["whatif", str(DEMO), "--scenarios", str(scenarios)]) == []


@pytest.mark.parametrize(
    "array",
    [
        pa.array([3, None, -7, 2**40], pa.int64()),
        pa.array([1, 2, 3, 4, 5, 6], pa.int32()).slice(2, 3),
        pa.array([1, None, 3, None, 5, 6, 7, 8, 9, None], pa.int16()).slice(3, 6),
        pa.array([250, 1], pa.uint8()),
        pa.array([0.5, None, float("inf")], pa.float32()),
        pa.array([1.25, -2.0], pa.float64()),
        pa.array([True, False, True, True, False, False, True, False, True], pa.bool_()).slice(1, 7),
        pa.array([], pa.int32()),
    ],
)
def test_arrow_buffers_read_like_pyarrow(array):
    expected = array.to_numpy(zero_copy_only=False)
    got = to_numpy(array)
    assert got.dtype.kind == expected.dtype.kind and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_text_and_timestamps_arrive_as_objects():
    assert to_numpy(pa.array(["a", None])).tolist() == ["a", None]
    assert to_numpy(pa.array([1], pa.timestamp("s"))).dtype == object


def test_several_row_groups_and_a_nullable_column(tmp_path):
    frame, meta = synthesize(dp=2, pp=2, microbatches=2, steps=3, seed=0, name="t")
    path = tmp_path / "trace-t.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=7)
    assert pq.ParquetFile(path).num_row_groups > 1
    columns = read_columns(path)
    for name in ("step", "seq_id", "start_ts", "duration"):
        np.testing.assert_array_equal(columns[name], frame[name].to_numpy())
    assert list(columns.labels("optype")) == frame["optype"].astype(str).tolist()

    frame["mb_id"] = pd.array(frame["mb_id"], dtype="Int32")
    frame.loc[5, "mb_id"] = pd.NA
    frame.to_parquet(path, index=False)
    assert np.isnan(read_columns(path)["mb_id"][5])


def test_trace_read_from_parquet_equals_the_frame_it_was_written_from(tmp_path):
    frame, meta = synthesize(dp=2, pp=3, vpp=1, microbatches=3, steps=2, seed=4, name="t")
    frame.to_parquet(tmp_path / "trace-t.parquet", index=False)
    (tmp_path / "meta-t.yaml").write_text("\n".join(f"{k}: {v}" for k, v in meta.items()))
    loaded = load_trace(tmp_path / "trace-t.parquet").ops
    for name in frame.columns:
        np.testing.assert_array_equal(loaded[name].astype(str).to_numpy(), frame[name].astype(str).to_numpy())
