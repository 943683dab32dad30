"""Load and validate a trace and its job metadata (SPEC §1).

The contract: :func:`load_trace` returns a :class:`Trace` whose op table has
the SPEC columns with fixed dtypes, any row order, and passes every check
below; anything else raises a :class:`~graphwia.errors.GraphwiaError` whose
one-line message names the file and the column, op, worker or step at fault.

Parquet is read with pyarrow straight into numpy columns (a
:class:`~graphwia.table.Table`); pandas is imported only for CSV files, for
:meth:`Trace.from_frame` and for the :attr:`Trace.ops` DataFrame view.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from graphwia.utils.arrow import to_numpy
from graphwia.errors import MetaError, TraceError, first_line
from graphwia.utils.io import read_yaml
from graphwia.optypes import ALL_OPTYPES, OPTYPE_CODE
from graphwia.trace.steps import format_ranges
from graphwia.utils.table import Table

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
META_FIELDS = ("trial_name", "run_id", "dp_size", "pp_size", "tp_size", "dsp_size", "vpp_size", "world_size")
SIZE_FIELDS = ("dp_size", "pp_size", "tp_size", "dsp_size", "vpp_size", "world_size")
#: Key of an op instance: no two rows of a trace may share it.
OP_KEY = ("step", "dp_rank", "stage", "optype", "seq_id")


@dataclass(frozen=True)
class JobMeta:
    """Parallelism layout of a job (SPEC §1, metadata)."""

    trial_name: str
    run_id: int
    dp_size: int
    pp_size: int
    tp_size: int
    dsp_size: int
    vpp_size: int
    world_size: int

    @property
    def uses_dp(self) -> bool:
        """True when gradients are reduced across data-parallel ranks."""
        return self.dp_size * self.dsp_size > 1

    def to_dict(self) -> dict:
        """The metadata in the published ``job_meta`` field order."""
        d = asdict(self)
        order = ("trial_name", "run_id", "dp_size", "pp_size", "tp_size", "dsp_size", "vpp_size", "world_size")
        return {k: d[k] for k in order}


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
    def from_frame(cls, frame, meta: JobMeta | dict, source: str = "<memory>") -> "Trace":
        """Validate an in-memory op table (a pandas DataFrame with the SPEC §1 columns) and metadata."""
        return cls.from_columns(_frame_columns(frame), meta, source)

    @classmethod
    def from_columns(cls, columns: Table | Mapping[str, np.ndarray], meta: JobMeta | dict,
                     source: str = "<memory>") -> "Trace":
        """Validate op-table columns (name → array, or a :class:`~graphwia.table.Table`) and metadata."""
        if isinstance(meta, dict):
            meta = parse_meta(meta, source=f"{source} metadata")
        raw = columns if isinstance(columns, Table) else Table(columns)
        ops = _normalise(raw, source)
        _check_against_meta(ops, meta, source)
        return cls(table=ops, meta=meta, source=source)


def load_meta(path: str | Path) -> JobMeta:
    """Read and validate a metadata YAML file (SPEC §1)."""
    return parse_meta(read_yaml(path, MetaError, "metadata"), source=str(path))


def parse_meta(raw: object, source: str = "<metadata>") -> JobMeta:
    """Validate a metadata mapping: all fields, positive sizes, consistent world size."""
    if not isinstance(raw, dict):
        raise MetaError(f"{source}: metadata must be a mapping of {', '.join(META_FIELDS)}")
    missing = [f for f in META_FIELDS if f not in raw]
    if missing:
        raise MetaError(f"{source}: metadata is missing field(s) {', '.join(missing)}")
    values = {"trial_name": str(raw["trial_name"])}
    for field in ("run_id",) + SIZE_FIELDS:
        value = raw[field]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise MetaError(f"{source}: {field} must be an integer, got {value!r}")
        if field in SIZE_FIELDS and value < 1:
            raise MetaError(f"{source}: {field} must be a positive integer, got {value}")
        values[field] = int(value)
    product = values["dp_size"] * values["pp_size"] * values["tp_size"] * values["dsp_size"]
    if values["world_size"] != product:
        raise MetaError(
            f"{source}: world_size {values['world_size']} != dp_size*pp_size*tp_size*dsp_size = {product}"
        )
    return JobMeta(**values)


def load_trace(trace_path: str | Path, meta_path: str | Path | None = None) -> Trace:
    """Load a trace (parquet or CSV) and its metadata YAML, validated.

    Parameters
    ----------
    trace_path:
        ``.parquet`` or ``.csv`` file with the SPEC §1 columns, rows in any order.
    meta_path:
        Metadata YAML. Default: ``meta-<name>.yaml`` beside ``trace-<name>.<ext>``.
    """
    trace_path = Path(trace_path)
    if meta_path is None:
        meta_path = default_meta_path(trace_path)
    meta = load_meta(meta_path)
    return Trace.from_columns(read_columns(trace_path), meta, source=str(trace_path))


def default_meta_path(trace_path: Path) -> Path:
    """``dir/trace-NAME.ext`` → ``dir/meta-NAME.yaml``."""
    name = trace_path.name.split(".")[0]
    if name.startswith("trace-"):
        name = name[len("trace-"):]
    return trace_path.with_name(f"meta-{name}.yaml")


def read_columns(path: Path) -> Table:
    """Read the SPEC columns of a parquet or CSV file, unvalidated, with a clear error otherwise.

    Columns the SPEC does not name are not read. A text column read from parquet
    (e.g. ``optype``) arrives dictionary-coded, as a categorical column.
    """
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: trace file not found")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv"):
        raise TraceError(f"{path}: unsupported trace format {suffix!r} (expected .parquet or .csv)")
    try:
        return _read_csv(path) if suffix == ".csv" else _read_parquet(path)
    except Exception as exc:  # pyarrow and the CSV parser raise many types
        kind = "parquet" if suffix != ".csv" else "CSV"
        raise TraceError(f"{path}: not a readable {kind} file ({first_line(exc, 200)})") from None


def _read_parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # ParquetFile, not read_table: the dataset layer behind read_table imports pandas (~0.3 s).
    # Opened twice (the footer is read twice, ~1 ms): read_dictionary is fixed at opening, and
    # which columns hold text is known only from the schema.
    schema = pq.ParquetFile(path).schema_arrow
    wanted = [name for name in COLUMNS if name in schema.names]
    text = [name for name in wanted if pa.types.is_string(schema.field(name).type)
            or pa.types.is_large_string(schema.field(name).type)]
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
        parts.append(np.where(np.isnan(indices), -1, indices).astype(np.int64) if chunk.null_count
                     else indices.astype(np.int64))
    return _concat(parts, np.int64), column.chunks[0].dictionary.to_pylist()


def _concat(parts: list[np.ndarray], empty_dtype) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=empty_dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _read_csv(path: Path) -> Table:
    import pandas as pd

    return _frame_columns(pd.read_csv(path))


def _frame_columns(frame) -> Table:
    """The SPEC columns of a pandas DataFrame as numpy arrays (text and categories as a categorical column)."""
    import pandas as pd

    columns, categories = {}, {}
    for name in COLUMNS:
        if name not in frame.columns:
            continue
        values = frame[name]
        if isinstance(values, pd.DataFrame):  # a repeated column name: take the first
            values = values.iloc[:, 0]
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


def _normalise(raw: Table, source: str) -> Table:
    """Check columns, types and values; return the op table in canonical dtypes."""
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
        raise TraceError(f"{source}: column duration has {negative.sum()} negative value(s), first: "
                         f"{describe_op(ops, np.argmax(negative))}")
    ops = ops.with_columns({"end": ops["start_ts"] + ops["duration"]})
    dup = _duplicated(ops, OP_KEY)
    if dup is not None:
        raise TraceError(f"{source}: {int(dup.sum())} duplicated op instance(s), first: "
                         f"{describe_op(ops, int(np.argmax(dup)))}")
    return ops


def _optype_column(raw: Table, source: str) -> np.ndarray:
    """Op types as int8 codes into ALL_OPTYPES; an unknown or missing one is an error naming it."""
    values = raw["optype"]
    if "optype" in raw.categories:
        names = raw.categories["optype"]
        recode = np.array([OPTYPE_CODE.get(str(name), -1) for name in names] + [-1], dtype=np.int64)
        codes = recode[values]  # a null (−1) picks the trailing −1
        bad = codes < 0
        unknown = {str(names[c]) for c in np.unique(values[bad]) if c >= 0} if bad.any() else set()
    else:  # plain values, e.g. from Trace.from_columns: map them one by one
        codes = np.array([OPTYPE_CODE.get(v, -1) if isinstance(v, str) else -1 for v in values], dtype=np.int64)
        bad = codes < 0
        unknown = {v for v in values[bad] if isinstance(v, str)}
    if bad.any():
        unknown = sorted(unknown)
        what = f"unknown op type(s) {', '.join(map(repr, unknown[:5]))}" if unknown else "missing values"
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
        if capacity >= 2 ** 62:
            return None
        combined = combined * span + (values - low)
    return combined


def _cell_error(raw: Table, column: str, bad: np.ndarray, source: str, what: str) -> TraceError:
    """``source: column C <what>: N row(s), first row i holds v (the op of that row)``."""
    i = int(np.argmax(bad))
    return TraceError(f"{source}: column {column} {what}: {int(np.sum(bad))} row(s), first row {i} holds "
                      f"{_cell_text(raw.label(column, i))} ({describe_op(raw, i)})")


def _cell_text(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _check_against_meta(ops: Table, meta: JobMeta, source: str) -> None:
    """The ranks and chunks present must fit the metadata's sizes."""
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
    for column, size, field in (("dp_rank", meta.dp_size, "dp_size"), ("stage", meta.pp_size, "pp_size")):
        present = np.zeros(size, dtype=bool)
        present[ops[column]] = True
        absent = np.flatnonzero(~present)
        if len(absent):
            raise TraceError(f"{source}: metadata {field}={size} but {column}(s) {format_ranges(absent)} have no ops")
    _check_chunks(ops, meta, source)


def _check_chunks(ops: Table, meta: JobMeta, source: str) -> None:
    """Every stage must hold ops of each of its vpp_size model chunks (column mc)."""
    chunked = ops["mc"] >= 0
    stage, mc = ops["stage"][chunked], ops["mc"][chunked]
    present = np.zeros((meta.pp_size, meta.vpp_size), dtype=bool)
    present[stage, mc] = True
    lacking = np.flatnonzero(~present.all(axis=1))
    if len(lacking):
        s = int(lacking[0])
        have = format_ranges(np.flatnonzero(present[s])) or "none"
        raise TraceError(f"{source}: metadata vpp_size={meta.vpp_size} but stage {s} has ops of model chunk(s) "
                         f"{have} only (column mc)")


def describe_op(ops: Table, i: int) -> str:
    """Name row ``i`` of an op table: optype, seq_id, worker and step."""
    def cell(name: str):
        return ops.label(name, i) if name in ops else "?"

    return (f"{cell('optype')} seq_id {cell('seq_id')} on worker (dp_rank {cell('dp_rank')}, stage {cell('stage')}) "
            f"in step {cell('step')}")
