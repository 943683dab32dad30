"""Load and validate a trace and its job metadata (SPEC §1).

The contract: :func:`load_trace` returns a :class:`Trace` whose op table has
the SPEC columns with fixed dtypes, any row order, and passes every check
below; anything else raises a :class:`~graphwia.errors.GraphwiaError` whose
one-line message names the file and the column, op, worker or step at fault.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import MetaError, TraceError, first_line
from .io import read_yaml
from .optypes import ALL_OPTYPES
from .steps import format_ranges

#: Column name → dtype of the validated op table.
COLUMNS = {
    "dp_rank": np.int32,
    "stage": np.int32,
    "rank": np.int32,
    "step": np.int64,
    "optype": None,  # categorical over ALL_OPTYPES
    "start_ts": np.float64,
    "duration": np.float64,
    "seq_id": np.int32,
    "mc": np.int32,
    "gmc": np.int32,
    "mb_id": np.int32,
}
META_FIELDS = ("trial_name", "run_id", "dp_size", "pp_size", "tp_size", "dsp_size", "vpp_size", "world_size")
SIZE_FIELDS = ("dp_size", "pp_size", "tp_size", "dsp_size", "vpp_size", "world_size")
OPTYPE_DTYPE = pd.CategoricalDtype(list(ALL_OPTYPES))


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

    ``ops`` has one row per op instance, columns :data:`COLUMNS`, and an extra
    ``end`` column (``start_ts + duration``).
    """

    ops: pd.DataFrame
    meta: JobMeta
    source: str = "<memory>"

    @property
    def steps(self) -> np.ndarray:
        """Sorted step numbers present in the trace."""
        return np.unique(self.ops["step"].to_numpy())

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, meta: JobMeta | dict, source: str = "<memory>") -> "Trace":
        """Validate an in-memory op table (SPEC §1 columns) and metadata."""
        if isinstance(meta, dict):
            meta = parse_meta(meta, source=f"{source} metadata")
        ops = _normalise(frame, source)
        _check_against_meta(ops, meta, source)
        return cls(ops=ops, meta=meta, source=source)


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
    frame = read_table(trace_path)
    return Trace.from_frame(frame, meta, source=str(trace_path))


def default_meta_path(trace_path: Path) -> Path:
    """``dir/trace-NAME.ext`` → ``dir/meta-NAME.yaml``."""
    name = trace_path.name.split(".")[0]
    if name.startswith("trace-"):
        name = name[len("trace-"):]
    return trace_path.with_name(f"meta-{name}.yaml")


def read_table(path: Path) -> pd.DataFrame:
    """Read a parquet or CSV file into a DataFrame, with a clear error otherwise."""
    if not path.is_file():
        raise TraceError(f"{path}: trace file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
    except Exception as exc:  # pyarrow and the CSV parser raise many types
        kind = "parquet" if suffix != ".csv" else "CSV"
        raise TraceError(f"{path}: not a readable {kind} file ({first_line(exc, 200)})") from None
    raise TraceError(f"{path}: unsupported trace format {suffix!r} (expected .parquet or .csv)")


def _normalise(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check columns, types and values; return the op table in canonical dtypes."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise TraceError(f"{source}: missing column(s) {', '.join(missing)}")
    if len(frame) == 0:
        raise TraceError(f"{source}: the trace has no rows")
    out = {}
    for column, dtype in COLUMNS.items():
        if dtype is None:
            out[column] = _optype_column(frame, source)
        elif np.issubdtype(dtype, np.integer):
            out[column] = _integer_column(frame, column, dtype, source)
        else:
            out[column] = _float_column(frame, column, source)
    ops = pd.DataFrame(out)
    negative = ops["duration"].to_numpy() < 0
    if negative.any():
        raise TraceError(f"{source}: column duration has {negative.sum()} negative value(s), first: {describe_op(ops, np.argmax(negative))}")
    ops["end"] = ops["start_ts"].to_numpy() + ops["duration"].to_numpy()
    key = ["step", "dp_rank", "stage", "optype", "seq_id"]
    dup = ops.duplicated(subset=key)
    if dup.any():
        raise TraceError(f"{source}: {int(dup.sum())} duplicated op instance(s), first: {describe_op(ops, int(np.argmax(dup.to_numpy())))}")
    return ops


def _optype_column(frame: pd.DataFrame, source: str) -> pd.Series:
    values = frame["optype"]
    if isinstance(values.dtype, pd.CategoricalDtype) and _known_categories(values):
        # Recode by category, not row by row. (astype would keep the file's category order:
        # pandas deems unordered dtypes with the same categories equal, and codes matter here.)
        return values.cat.set_categories(OPTYPE_DTYPE.categories)
    strings = values.astype(str).where(values.notna(), None)
    bad = ~strings.isin(ALL_OPTYPES).to_numpy()
    if bad.any():
        unknown = sorted(set(strings[bad].dropna()))
        what = f"unknown op type(s) {', '.join(map(repr, unknown[:5]))}" if unknown else "missing values"
        raise _cell_error(frame, "optype", bad, source, f"has {what}")
    return strings.astype(OPTYPE_DTYPE)


def _known_categories(values: pd.Series) -> bool:
    """A categorical column without missing values whose used categories are all known op types."""
    codes = values.cat.codes.to_numpy()
    if (codes < 0).any():
        return False
    used = values.cat.categories[np.unique(codes)]
    return set(map(str, used)) <= set(ALL_OPTYPES)


def _integer_column(frame: pd.DataFrame, column: str, dtype, source: str) -> np.ndarray:
    values = frame[column]
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        array = values.to_numpy().astype(np.int64)
    else:
        array = _numeric_values(frame, column, "integer", source)
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            raise _cell_error(frame, column, bad, source, "must hold integers")
    limits = np.iinfo(dtype)
    bad = (array < limits.min) | (array > limits.max)
    if bad.any():
        raise _cell_error(frame, column, bad, source, f"must hold integers within {dtype.__name__}")
    return array.astype(dtype)


def _float_column(frame: pd.DataFrame, column: str, source: str) -> np.ndarray:
    array = _numeric_values(frame, column, "numeric seconds", source)
    bad = ~np.isfinite(array)
    if bad.any():
        raise _cell_error(frame, column, bad, source, "has NaN/inf value(s)")
    return array


def _numeric_values(frame: pd.DataFrame, column: str, kind: str, source: str) -> np.ndarray:
    """A column as float64; a cell that is not a number (e.g. text in a CSV) is an error naming it."""
    values = frame[column]
    if pd.api.types.is_bool_dtype(values.dtype):
        raise TraceError(f"{source}: column {column} must be {kind}, got {values.dtype}")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        numbers = pd.to_numeric(values.astype(object), errors="coerce")
    except (TypeError, ValueError):
        raise TraceError(f"{source}: column {column} must be {kind}, got {values.dtype}") from None
    not_number = (numbers.isna() & values.notna()).to_numpy()
    if not_number.any():
        raise _cell_error(frame, column, not_number, source, f"must be {kind}")
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def _cell_error(frame: pd.DataFrame, column: str, bad: np.ndarray, source: str, what: str) -> TraceError:
    """``source: column C <what>: N row(s), first row i holds v (the op of that row)``."""
    i = int(np.argmax(bad))
    return TraceError(f"{source}: column {column} {what}: {int(np.sum(bad))} row(s), first row {i} holds "
                      f"{_cell_text(frame[column].iloc[i])} ({describe_op(frame, i)})")


def _cell_text(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _check_against_meta(ops: pd.DataFrame, meta: JobMeta, source: str) -> None:
    """The ranks and chunks present must fit the metadata's sizes."""
    checks = (
        ("dp_rank", meta.dp_size, "dp_size"),
        ("stage", meta.pp_size, "pp_size"),
        ("mc", meta.vpp_size, "vpp_size"),
    )
    for column, size, field in checks:
        values = ops[column].to_numpy()
        low = -1 if column == "mc" else 0
        out = (values < low) | (values >= size)
        if out.any():
            raise TraceError(
                f"{source}: column {column} holds {values[out][0]}, outside [0, {size}) given by metadata {field}={size}"
            )
    for column, size, field in (("dp_rank", meta.dp_size, "dp_size"), ("stage", meta.pp_size, "pp_size")):
        absent = np.setdiff1d(np.arange(size), ops[column].to_numpy())
        if len(absent):
            raise TraceError(f"{source}: metadata {field}={size} but {column}(s) {format_ranges(absent)} have no ops")
    _check_chunks(ops, meta, source)


def _check_chunks(ops: pd.DataFrame, meta: JobMeta, source: str) -> None:
    """Every stage must hold ops of each of its vpp_size model chunks (column mc)."""
    chunked = ops["mc"].to_numpy() >= 0
    stage, mc = ops["stage"].to_numpy()[chunked], ops["mc"].to_numpy()[chunked]
    present = np.zeros((meta.pp_size, meta.vpp_size), dtype=bool)
    present[stage, mc] = True
    lacking = np.flatnonzero(~present.all(axis=1))
    if len(lacking):
        s = int(lacking[0])
        have = format_ranges(np.flatnonzero(present[s])) or "none"
        raise TraceError(f"{source}: metadata vpp_size={meta.vpp_size} but stage {s} has ops of model chunk(s) "
                         f"{have} only (column mc)")


def describe_op(ops: pd.DataFrame, i: int) -> str:
    """Name row ``i`` of an op table: optype, seq_id, worker and step."""
    row = ops.iloc[int(i)]
    return (f"{row['optype']} seq_id {row['seq_id']} on worker (dp_rank {row['dp_rank']}, stage {row['stage']}) "
            f"in step {row['step']}")
