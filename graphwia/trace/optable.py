"""Load and validate a trace (SPEC §1); its metadata is :mod:`graphwia.trace.meta`.

The contract: :func:`load_trace` returns a :class:`Trace` whose op table has
the SPEC columns with fixed dtypes, times in seconds, any row order, and
passes every check below; anything else raises a
:class:`~graphwia.errors.GraphwiaError` whose one-line message names the file
and the column, op, worker or step at fault. The trace file is checked before
the metadata file, and the metadata's sizes against the trace before anything
is allocated per rank.

Beyond types and values, the checks catch data that would analyse into
nonsense: timestamps too coarse for the ops they time (float32 epochs),
implausible time units (:class:`TimeUnitError`; ``time_unit`` converts),
an ``end`` that overflows, steps whose ops all last 0 s or that have no
``optimizer`` op (the step time is defined by it), a ``rank`` that is not one
per worker, and p2p ops in a job without pipeline stages to pair them with.

Parquet is read with pyarrow straight into numpy columns (a
:class:`~graphwia.utils.table.Table`); pandas is imported only for CSV files
(``.csv`` or gzip-compressed ``.csv.gz``), for :meth:`Trace.from_frame` and for
the :attr:`Trace.ops` DataFrame view.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphwia.errors import TraceError, first_line
from graphwia.optypes import ALL_OPTYPES, OPTIMIZER, OPTYPE_CODE, P2P_OPTYPES
from graphwia.trace.meta import JobMeta, default_meta_path, load_meta, parse_meta
from graphwia.trace.steps import format_ranges
from graphwia.utils.arrow import to_numpy
from graphwia.utils.names import shown
from graphwia.utils.table import Table

__all__ = [
    "COLUMNS",
    "MAX_MEDIAN_DURATION_S",
    "MAX_STEP_SPAN_S",
    "OP_KEY",
    "TIMESTAMP_RESOLUTION",
    "TIME_UNITS",
    "TRACE_SUFFIXES",
    "TimeUnitError",
    "Trace",
    "UNIT_NAMES",
    "check_trace_file",
    "describe_op",
    "load_trace",
    "read_columns",
]

#: Column name → dtype of the validated op table (``optype``: int8 codes into ALL_OPTYPES).
COLUMNS = {
    "dp_rank": np.int32,
    "stage": np.int32,
    "rank": np.int32,
    "step": np.int64,
    "optype": np.int8,
    "start_ts": np.float64,
    "duration": np.float64,
    "seq_id": np.int32,
    "mc": np.int32,
    "gmc": np.int32,
    "mb_id": np.int32,
}
#: Key of an op instance: no two rows of a trace may share it.
OP_KEY = ("step", "dp_rank", "stage", "optype", "seq_id")
#: Trace file extensions read (``.csv.gz``: gzip-compressed CSV).
TRACE_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz")
#: Seconds per unit of the ``time_unit`` option.
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
#: Unit names for messages.
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
#: Read as seconds, a median op duration above this is implausible (a training op lasts µs to seconds).
MAX_MEDIAN_DURATION_S = 10.0
#: Read as seconds, a step spanning more than this (a day) is implausible.
MAX_STEP_SPAN_S = 86_400.0
#: Timestamps must resolve this fraction of the median op duration.
TIMESTAMP_RESOLUTION = 0.01


class TimeUnitError(TraceError):
    """The trace's times do not look like seconds. ``guess``: the unit they look like (None: mixed units)."""

    def __init__(self, message: str, guess: str | None):
        super().__init__(message)
        self.guess = guess


@dataclass(frozen=True)
class Trace:
    """A validated trace: the op table plus the job's metadata.

    ``table`` has one row per op instance, columns :data:`COLUMNS` (``optype``
    as codes into :data:`~graphwia.optypes.ALL_OPTYPES`), and an extra ``end``
    column (``start_ts + duration``). :attr:`ops` is the same as a DataFrame.
    """

    table: Table
    meta: JobMeta
    source: str = "<memory>"

    @functools.cached_property
    def ops(self):
        """The op table as a pandas DataFrame (``optype`` categorical), built on first use."""
        return self.table.to_pandas()

    @functools.cached_property
    def steps(self) -> np.ndarray:
        """Sorted step numbers present in the trace."""
        return np.unique(self.table["step"])

    @classmethod
    def from_frame(
        cls, frame, meta: JobMeta | dict, *, source: str = "<memory>", time_unit: str | None = None
    ) -> Trace:
        """Validate an in-memory op table (a pandas DataFrame with the SPEC §1 columns) and metadata."""
        return cls.from_columns(_frame_columns(frame, source), meta, source=source, time_unit=time_unit)

    @classmethod
    def from_columns(
        cls,
        columns: Table | Mapping[str, np.ndarray],
        meta: JobMeta | dict,
        *,
        source: str = "<memory>",
        time_unit: str | None = None,
    ) -> Trace:
        """Validate op-table columns (name → array, or a :class:`~graphwia.utils.table.Table`) and metadata.

        ``time_unit`` (``s``, ``ms``, ``us`` or ``ns``) is the unit of ``start_ts``
        and ``duration``; None: seconds, and a trace whose times do not look like
        seconds raises :class:`TimeUnitError`.
        """
        if time_unit is not None and time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit must be one of {', '.join(TIME_UNITS)}, got {time_unit!r}")
        if isinstance(meta, dict):
            meta = parse_meta(meta, source=f"{source} metadata")
        raw = columns if isinstance(columns, Table) else Table(columns)
        ops = _normalise(raw, source, time_unit)
        _check_against_meta(ops, meta, source)
        _check_consistency(ops, meta, source)
        return cls(table=ops, meta=meta, source=source)


def load_trace(trace_path: str | Path, meta_path: str | Path | None = None, *, time_unit: str | None = None) -> Trace:
    """Load a trace (parquet, CSV or gzip-compressed CSV) and its metadata YAML, validated.

    Parameters
    ----------
    trace_path:
        ``.parquet``, ``.csv`` or ``.csv.gz`` file with the SPEC §1 columns, rows in any order.
        It is checked (present, a file, a known format) before the metadata is read.
    meta_path:
        Metadata YAML. Default: ``meta-<name>.yaml`` beside ``trace-<name>.<ext>``.
    time_unit:
        Unit of ``start_ts`` and ``duration`` (see :meth:`Trace.from_columns`).
    """
    trace_path = Path(trace_path)
    check_trace_file(trace_path)
    meta = load_meta(default_meta_path(trace_path) if meta_path is None else meta_path)
    return Trace.from_columns(read_columns(trace_path), meta, source=str(trace_path), time_unit=time_unit)


def check_trace_file(path: str | Path) -> str:
    """The format of a trace file (one of :data:`TRACE_SUFFIXES`); a one-line error if it cannot be one."""
    path = Path(path)
    if path.is_dir():
        raise TraceError(f"{path}: is a directory, not a trace file ({', '.join(TRACE_SUFFIXES)})")
    if not path.is_file():
        raise TraceError(f"{path}: trace file not found")
    name = path.name.lower()
    suffix = next((s for s in TRACE_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        hint = ""
        if name.endswith(".json") and name.startswith(("result-", "ms-", "mw-")):
            hint = "; this looks like a result file written by graphwia analyze, not a trace"
        raise TraceError(
            f"{path}: unsupported trace format {path.suffix.lower()!r} (expected {', '.join(TRACE_SUFFIXES)}){hint}"
        )
    return suffix


def read_columns(path: str | Path) -> Table:
    """Read the SPEC columns of a parquet or (gzip-compressed) CSV file, unvalidated, with a clear error otherwise.

    Columns the SPEC does not name are not read; one the file holds twice is an
    error. A text column read from parquet (e.g. ``optype``) arrives
    dictionary-coded, as a categorical column.
    """
    path = Path(path)
    suffix = check_trace_file(path)
    csv = suffix.startswith(".csv")
    try:
        return _read_csv(path) if csv else _read_parquet(path)
    except TraceError:
        raise
    except Exception as exc:  # pyarrow and the CSV parser raise many types
        raise TraceError(
            f"{path}: not a readable {'CSV' if csv else 'parquet'} file ({first_line(exc, limit=200)})"
        ) from None


def _check_header(names: list[str], source: str) -> None:
    """A SPEC column named twice is an error; a header that is one column with ';' or tabs names the separator."""
    repeated = sorted({name for name in names if name in COLUMNS and names.count(name) > 1})
    if repeated:
        raise TraceError(
            f"{source}: column(s) {', '.join(repeated)} appear more than once in the header; keep one of each"
        )
    if len(names) == 1 and not any(name in COLUMNS for name in names):
        for separator, word in ((";", "';'"), ("\t", "tab"), ("|", "'|'")):
            if names[0].count(separator) >= 2:
                raise TraceError(
                    f"{source}: the header {shown(names[0])} looks {word}-separated; a trace CSV is comma-separated"
                )


def _read_parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # ParquetFile, not read_table: the dataset layer behind read_table imports pandas (~0.3 s).
    # Opened twice (the footer is read twice, ~1 ms): read_dictionary is fixed at opening, and
    # which columns hold text is known only from the schema.
    schema = pq.ParquetFile(path).schema_arrow
    _check_header(list(schema.names), str(path))
    wanted = [name for name in COLUMNS if name in schema.names]
    text = [
        name
        for name in wanted
        if pa.types.is_string(schema.field(name).type) or pa.types.is_large_string(schema.field(name).type)
    ]
    table = pq.ParquetFile(path, read_dictionary=text).read(columns=wanted, use_pandas_metadata=False)
    columns, categories = {}, {}
    for name in wanted:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            columns[name], categories[name] = _dictionary_codes(column)
        else:
            columns[name] = _concat([to_numpy(chunk) for chunk in column.chunks], np.float64)
    return Table(columns, categories)


def _dictionary_codes(column) -> tuple[np.ndarray, list]:
    """Codes (−1: null) and category values of a dictionary-encoded arrow column."""
    column = column.unify_dictionaries() if column.num_chunks > 1 else column
    if column.num_chunks == 0:
        return np.zeros(0, dtype=np.int64), []
    parts = []
    for chunk in column.chunks:
        indices = to_numpy(chunk.indices)
        parts.append(
            np.where(np.isnan(indices), -1, indices).astype(np.int64) if chunk.null_count else indices.astype(np.int64)
        )
    return _concat(parts, np.int64), column.chunks[0].dictionary.to_pylist()


def _concat(parts: list[np.ndarray], empty_dtype) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=empty_dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _read_csv(path: Path) -> Table:
    import csv
    import gzip

    import pandas as pd

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader([handle.readline(1 << 20)]), [])
    _check_header([name.strip() for name in header], str(path))
    return _frame_columns(pd.read_csv(path), str(path))


def _frame_columns(frame, source: str) -> Table:
    """The SPEC columns of a pandas DataFrame as numpy arrays (text and categories as a categorical column)."""
    import pandas as pd

    _check_header([str(name) for name in frame.columns], source)
    columns, categories = {}, {}
    for name in COLUMNS:
        if name not in frame.columns:
            continue
        values = frame[name]
        if name == "optype" and not isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(object).astype("category")  # hash the text once, not row by row
        if isinstance(values.dtype, pd.CategoricalDtype):
            columns[name] = values.cat.codes.to_numpy().astype(np.int64)
            categories[name] = list(values.cat.categories)
        elif pd.api.types.is_bool_dtype(values.dtype):
            columns[name] = values.to_numpy(dtype=bool, na_value=False)
        elif pd.api.types.is_numeric_dtype(values.dtype):
            has_na = bool(values.isna().any())
            columns[name] = values.to_numpy(dtype=np.float64, na_value=np.nan) if has_na else values.to_numpy()
        else:
            columns[name] = values.to_numpy(dtype=object)
    return Table(columns, categories)


# ----------------------------------------------------------------------------
# Validation


def _normalise(raw: Table, source: str, time_unit: str | None) -> Table:
    """Check columns, types, values and times; return the op table in canonical dtypes, times in seconds."""
    missing = [c for c in COLUMNS if c not in raw]
    if missing:
        raise TraceError(f"{source}: missing column(s) {', '.join(missing)}")
    if len(raw) == 0:
        raise TraceError(f"{source}: the trace has no rows")
    out = {}
    for column, dtype in COLUMNS.items():
        if column == "optype":
            out[column] = _optype_column(raw, source)
        elif np.issubdtype(dtype, np.integer):
            out[column] = _integer_column(raw, column, dtype, source)
        else:
            out[column] = _float_column(raw, column, source)
    ops = Table(out, {"optype": ALL_OPTYPES})
    negative = ops["duration"] < 0
    if negative.any():
        raise TraceError(
            f"{source}: column duration has {negative.sum()} negative value(s), first: "
            f"{describe_op(ops, int(np.argmax(negative)))}"
        )
    ops = _in_seconds(raw, ops, time_unit)
    with np.errstate(over="ignore"):
        end = ops["start_ts"] + ops["duration"]
    overflow = ~np.isfinite(end)
    if overflow.any():
        raise TraceError(
            f"{source}: start_ts + duration overflows for {int(overflow.sum())} op(s), first: "
            f"{describe_op(ops, int(np.argmax(overflow)))}"
        )
    ops = ops.with_columns({"end": end})
    start_dtype = raw["start_ts"].dtype if "start_ts" not in raw.categories else np.dtype(object)
    _check_times(ops, start_dtype, source, check_unit=time_unit is None)
    dup = _duplicated(ops, OP_KEY)
    if dup is not None:
        raise TraceError(
            f"{source}: {int(dup.sum())} duplicated op instance(s), first: {describe_op(ops, int(np.argmax(dup)))}"
        )
    return ops


def _in_seconds(raw: Table, ops: Table, time_unit: str | None) -> Table:
    """``start_ts`` and ``duration`` converted from ``time_unit`` to seconds (None or ``s``: as they are).

    Integer timestamps (e.g. epoch nanoseconds) are made relative to the
    earliest one before the conversion, so no precision is lost on the way.
    """
    if time_unit in (None, "s"):
        return ops
    factor = TIME_UNITS[time_unit]
    start = raw["start_ts"]
    if start.dtype.kind in "iu" and "start_ts" not in raw.categories:
        start = (start.astype(np.int64) - start.min()).astype(np.float64)
    else:
        start = ops["start_ts"]
    return ops.with_columns({"start_ts": start * factor, "duration": ops["duration"] * factor})


def _check_times(ops: Table, start_dtype: np.dtype, source: str, *, check_unit: bool) -> None:
    """Times that cannot be seconds, timestamps too coarse for the ops they time, steps of 0 s."""
    duration, start, step = ops["duration"], ops["start_ts"], ops["step"]
    lasting = duration > 0
    idle = np.setdiff1d(_distinct(step), _distinct(step[lasting]), assume_unique=True)
    if len(idle):
        raise TraceError(
            f"{source}: every op of step(s) {format_ranges(idle)} lasts 0 s (column duration): "
            "such a step has no time to analyse"
        )
    median = float(np.median(duration[lasting]))
    if check_unit and median > MAX_MEDIAN_DURATION_S:
        guess = next((u for u in ("ms", "us") if median * TIME_UNITS[u] <= MAX_MEDIAN_DURATION_S), "ns")
        raise TimeUnitError(
            f"{source}: times do not look like seconds: read as seconds, the median op lasts "
            f"{median:.4g} s; they look like {UNIT_NAMES[guess]}",
            guess,
        )
    if check_unit and float(ops["end"].max() - start.min()) > MAX_STEP_SPAN_S:  # the trace spans a day: look closer
        steps, step_of = np.unique(step, return_inverse=True)
        first, last = np.full(len(steps), np.inf), np.full(len(steps), -np.inf)
        np.minimum.at(first, step_of, start)
        np.maximum.at(last, step_of, ops["end"])
        span = last - first
        worst = int(np.argmax(span))
        if span[worst] > MAX_STEP_SPAN_S:
            raise TimeUnitError(
                f"{source}: start_ts and duration do not look like seconds alike: step "
                f"{steps[worst]} spans {span[worst]:.4g} s from its first start to its last end, "
                f"while the median op lasts {median:.4g} s",
                None,
            )
    if start_dtype.kind == "f":
        largest = max(-float(start.min()), float(start.max()))
        resolution = float(np.spacing(start_dtype.type(largest)))
        if resolution > TIMESTAMP_RESOLUTION * median:
            raise TraceError(
                f"{source}: column start_ts holds values up to {largest:.6g} as {start_dtype.name}, "
                f"which resolves them only to {resolution:.3g}, coarse against the median op "
                f"duration {median:.3g}: store start_ts as float64, or relative to the job's start"
            )


def _distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an integer column: by counting when they span a range no wider
    than the column is long (ranks, stages, steps), else by sorting."""
    if not len(values):
        return values[:0]
    low, high = int(values.min()), int(values.max())
    if high - low > len(values):
        return np.unique(values)
    return np.flatnonzero(np.bincount(values - low, minlength=high - low + 1)) + low


def _optype_column(raw: Table, source: str) -> np.ndarray:
    """Op types as int8 codes into ALL_OPTYPES; an unknown or missing one is an error naming it."""
    values = raw["optype"]
    if "optype" in raw.categories:
        names = raw.categories["optype"]
        recode = np.array([OPTYPE_CODE.get(str(name), -1) for name in names] + [-1], dtype=np.int64)
        codes = recode[values]  # a null (−1) picks the trailing −1
        bad = codes < 0
        unknown = {str(names[c]) for c in np.unique(values[bad]) if c >= 0} if bad.any() else set()
    elif values.dtype.kind in "iufb":
        raise _cell_error(
            raw,
            "optype",
            np.ones(len(values), dtype=bool),
            source,
            f"holds numbers, not op type names such as {ALL_OPTYPES[0]}",
        )
    else:  # plain values, e.g. from Trace.from_columns: map them one by one
        codes = np.array([OPTYPE_CODE.get(v, -1) if isinstance(v, str) else -1 for v in values], dtype=np.int64)
        bad = codes < 0
        unknown = {v for v in values[bad] if isinstance(v, str)}
    if bad.any():
        listed = sorted(unknown)
        what = f"unknown op type(s) {', '.join(map(repr, listed[:5]))}" if listed else "missing values"
        raise _cell_error(raw, "optype", bad, source, f"has {what}")
    return codes.astype(np.int8)


def _integer_column(raw: Table, column: str, dtype, source: str) -> np.ndarray:
    values = raw[column]
    if column not in raw.categories and values.dtype.kind in "iu":
        array = values.astype(np.int64)
    else:
        array = _numeric_values(raw, column, "integer", source)
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            raise _cell_error(raw, column, bad, source, "must hold integers")
    limits = np.iinfo(dtype)
    bad = (array < limits.min) | (array > limits.max)
    if bad.any():
        raise _cell_error(raw, column, bad, source, f"must hold integers within {dtype.__name__}")
    return array.astype(dtype)


def _float_column(raw: Table, column: str, source: str) -> np.ndarray:
    array = _numeric_values(raw, column, "numeric seconds", source)
    bad = ~np.isfinite(array)
    if bad.any():
        raise _cell_error(raw, column, bad, source, "has NaN/inf value(s)")
    return array


def _numeric_values(raw: Table, column: str, kind: str, source: str) -> np.ndarray:
    """A column as float64; a cell that is not a number (e.g. text in a CSV) is an error naming it."""
    values = raw.labels(column) if column in raw.categories else raw[column]
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    if values.dtype.kind not in "OUS":  # bool, datetime, …
        raise TraceError(f"{source}: column {column} must be {kind}, got {values.dtype}")
    numbers = np.empty(len(values), dtype=np.float64)
    not_number = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values.tolist()):  # text cells: only CSV files and hand-made tables
        numbers[i], not_number[i] = _as_number(value)
    if not_number.any():
        raise _cell_error(raw, column, not_number, source, f"must be {kind}")
    return numbers


def _as_number(value) -> tuple[float, bool]:
    """(value as a float, True if it is not a number); a missing value is NaN."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return np.nan, False
    if isinstance(value, (bool, np.bool_)):
        return np.nan, True
    try:
        return float(value), False
    except (TypeError, ValueError):
        return np.nan, True


def _duplicated(ops: Table, key: tuple[str, ...]) -> np.ndarray | None:
    """Rows repeating the ``key`` of an earlier row (None when there are none)."""
    combined = _combined_key(ops, key)
    if combined is None:  # too wide for one integer: sort the columns together
        order = np.lexsort([ops[name] for name in reversed(key)])
        ordered = np.column_stack([ops[name][order] for name in key])
        repeat = np.concatenate([[False], (ordered[1:] == ordered[:-1]).all(axis=1)])
    else:
        ordered = np.sort(combined)
        if not (ordered[1:] == ordered[:-1]).any():
            return None
        order = np.argsort(combined, kind="stable")  # equal keys keep their row order: the first is not a repeat
        ordered = combined[order]
        repeat = np.concatenate([[False], ordered[1:] == ordered[:-1]])
    if not repeat.any():
        return None
    dup = np.zeros(len(ops), dtype=bool)
    dup[order] = repeat
    return dup


def _combined_key(ops: Table, key: tuple[str, ...]) -> np.ndarray | None:
    """The key columns packed into one int64 per row (mixed radix), or None if they do not fit."""
    combined = np.zeros(len(ops), dtype=np.int64)
    capacity = 1
    for name in key:
        values = ops[name].astype(np.int64)
        low, span = int(values.min()), int(values.max()) - int(values.min()) + 1
        capacity *= span
        if capacity >= 2**62:
            return None
        combined = combined * span + (values - low)
    return combined


def _cell_error(raw: Table, column: str, bad: np.ndarray, source: str, what: str) -> TraceError:
    """``source: column C <what>: N row(s), first row i holds v (the op of that row)``."""
    i = int(np.argmax(bad))
    return TraceError(
        f"{source}: column {column} {what}: {int(np.sum(bad))} row(s), first row {i} holds "
        f"{_cell_text(raw.label(column, i))} ({describe_op(raw, i)})"
    )


def _cell_text(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _check_against_meta(ops: Table, meta: JobMeta, source: str) -> None:
    """The ranks and chunks present must fit the metadata's sizes (compared before anything is sized by them)."""
    checks = (
        ("dp_rank", meta.dp_size, "dp_size"),
        ("stage", meta.pp_size, "pp_size"),
        ("mc", meta.vpp_size, "vpp_size"),
    )
    for column, size, field in checks:
        values = ops[column]
        low = -1 if column == "mc" else 0
        out = (values < low) | (values >= size)
        if out.any():
            raise TraceError(
                f"{source}: column {column} holds {values[out][0]}, outside [0, {size}) given by metadata {field}={size}"
            )
    for column, size, field in checks:
        present = _distinct(ops[column])
        present = present[present >= 0]
        if len(present) == size:
            continue
        if size > len(ops):  # more ranks than rows: too many to list the absent ones
            raise TraceError(
                f"{source}: metadata {field}={size} but the trace has ops of {len(present)} "
                f"{column} value(s) only ({format_ranges(present) or 'none'})"
            )
        if column != "mc":  # chunks are checked per stage below
            absent = np.setdiff1d(np.arange(size), present)
            raise TraceError(f"{source}: metadata {field}={size} but {column}(s) {format_ranges(absent)} have no ops")
    _check_chunks(ops, meta, source)


def _check_chunks(ops: Table, meta: JobMeta, source: str) -> None:
    """Every stage must hold ops of each of its vpp_size model chunks (column mc)."""
    chunked = ops["mc"] >= 0
    stage, mc = ops["stage"][chunked], ops["mc"][chunked]
    pairs = meta.pp_size * meta.vpp_size
    if pairs > len(stage):  # each (stage, chunk) needs an op: refuse before sizing an array by it
        raise TraceError(
            f"{source}: metadata pp_size*vpp_size = {pairs} (stage, model chunk) pairs, but only "
            f"{len(stage)} op(s) have a model chunk (column mc)"
        )
    present = np.zeros((meta.pp_size, meta.vpp_size), dtype=bool)
    present[stage, mc] = True
    lacking = np.flatnonzero(~present.all(axis=1))
    if len(lacking):
        s = int(lacking[0])
        have = format_ranges(np.flatnonzero(present[s])) or "none"
        raise TraceError(
            f"{source}: metadata vpp_size={meta.vpp_size} but stage {s} has ops of model chunk(s) "
            f"{have} only (column mc)"
        )


def _check_consistency(ops: Table, meta: JobMeta, source: str) -> None:
    """One rank per worker and one worker per rank; an optimizer op in every step; p2p ops only with stages."""
    if meta.pp_size == 1:
        p2p = np.isin(ops["optype"], [OPTYPE_CODE[t] for t in P2P_OPTYPES])
        if p2p.any():
            raise TraceError(
                f"{source}: metadata pp_size=1 but the trace has {int(p2p.sum())} p2p op(s), which "
                f"need a peer stage; first: {describe_op(ops, int(np.argmax(p2p)))}"
            )
    workers = meta.dp_size * meta.pp_size
    if workers > len(ops):  # every worker runs ops: refuse before sizing an array by them
        raise TraceError(
            f"{source}: metadata dp_size*pp_size = {workers} workers, but the trace has only {len(ops)} op(s)"
        )
    worker = ops["dp_rank"].astype(np.int64) * meta.pp_size + ops["stage"]
    rank_of = np.full(workers, -1, dtype=np.int64)
    rank_of[worker] = ops["rank"]
    changed = ops["rank"] != rank_of[worker]
    if changed.any():
        i = int(np.argmax(changed))
        raise TraceError(
            f"{source}: column rank changes within worker (dp_rank {ops['dp_rank'][i]}, stage "
            f"{ops['stage'][i]}): it holds {ops['rank'][i]} and {rank_of[worker[i]]}; a worker has one rank"
        )
    ranks, count = np.unique(rank_of[rank_of >= 0], return_counts=True)  # −1: a worker without ops
    if (count > 1).any():
        shared = int(np.argmax(count > 1))
        pair = np.flatnonzero(rank_of == ranks[shared])[:2]
        (d0, s0), (d1, s1) = (divmod(int(w), meta.pp_size) for w in pair)
        raise TraceError(
            f"{source}: column rank holds {ranks[shared]} for two workers, (dp_rank {d0}, stage {s0}) "
            f"and (dp_rank {d1}, stage {s1}); each worker has its own rank"
        )
    lacking = np.setdiff1d(
        _distinct(ops["step"]), _distinct(ops["step"][ops["optype"] == OPTYPE_CODE[OPTIMIZER]]), assume_unique=True
    )
    if len(lacking):
        raise TraceError(
            f"{source}: step(s) {format_ranges(lacking)} have no {OPTIMIZER} op; a step's time is "
            f"defined by its {OPTIMIZER} ops (SPEC §4)"
        )


def describe_op(ops: Table, i: int) -> str:
    """Name row ``i`` of an op table: optype, seq_id, worker and step."""

    def cell(name: str):
        return ops.label(name, i) if name in ops else "?"

    return (
        f"{cell('optype')} seq_id {cell('seq_id')} on worker (dp_rank {cell('dp_rank')}, stage {cell('stage')}) "
        f"in step {cell('step')}"
    )
