"""Job metadata (SPEC §1): the parallelism layout of a trace, checked before any work.

:func:`parse_meta` accepts a mapping only when every field has the right type
and range: ``trial_name`` passes the name rule of :mod:`graphwia.utils.names`
(it becomes part of every output file name), ``run_id`` fits an int64, every
size is a positive integer of at most :data:`MAX_SIZE`, and ``world_size`` is
the product of the others. Whether the sizes fit the trace itself is checked
by :mod:`graphwia.trace.optable` before it allocates anything per rank.

Optional fields (:data:`OPTIONAL_FIELDS`), absent or null when unknown: the
message sizes an import found in the traces, ``activation_bytes`` (each p2p
message) and ``grad_bytes`` (each DP collective op), whole numbers of bytes in
[0, 2^63). :meth:`JobMeta.to_dict` writes them only when known.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from graphwia.errors import MetaError
from graphwia.utils.io import read_yaml
from graphwia.utils.names import check_name, shown

__all__ = [
    "META_FIELDS",
    "MAX_SIZE",
    "OPTIONAL_FIELDS",
    "SIZE_FIELDS",
    "JobMeta",
    "default_meta_path",
    "load_meta",
    "parse_meta",
]

META_FIELDS = ("trial_name", "run_id", "dp_size", "pp_size", "tp_size", "dsp_size", "vpp_size", "world_size")
SIZE_FIELDS = ("dp_size", "pp_size", "tp_size", "dsp_size", "vpp_size", "world_size")
#: Fields that may be absent (None: unknown).
OPTIONAL_FIELDS = ("activation_bytes", "grad_bytes")
#: Largest size accepted: ranks and chunks are int32 columns of the op table.
MAX_SIZE = 2**31 - 1
#: run_id is written back as a JSON integer that readers hold in an int64.
RUN_ID_RANGE = (-(2**63), 2**63 - 1)


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
    activation_bytes: int | None = None
    grad_bytes: int | None = None

    @property
    def uses_dp(self) -> bool:
        """True when gradients are reduced across data-parallel ranks."""
        return self.dp_size * self.dsp_size > 1

    def to_dict(self) -> dict:
        """The metadata in the published ``job_meta`` field order, then the optional fields that are known."""
        d = asdict(self)
        return {k: d[k] for k in META_FIELDS} | {k: d[k] for k in OPTIONAL_FIELDS if d[k] is not None}


def load_meta(path: str | Path) -> JobMeta:
    """Read and validate a metadata YAML file (SPEC §1)."""
    return parse_meta(read_yaml(path, MetaError, "metadata"), source=str(path))


def parse_meta(raw: object, *, source: str = "<metadata>") -> JobMeta:
    """Validate a metadata mapping: every field present, of the right type and range, a consistent world size.

    Raises :class:`~graphwia.errors.MetaError` naming ``source`` and the field.
    """
    if not isinstance(raw, dict):
        raise MetaError(f"{source}: metadata must be a mapping of {', '.join(META_FIELDS)}")
    missing = [f for f in META_FIELDS if f not in raw]
    if missing:
        raise MetaError(f"{source}: metadata is missing field(s) {', '.join(missing)}")
    trial_name = check_name(raw["trial_name"], what="trial_name", source=source, error=MetaError)
    values: dict[str, int] = {}
    for field in ("run_id",) + SIZE_FIELDS:
        value = raw[field]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise MetaError(f"{source}: {field} must be an integer, got {shown(value)}")
        low, high = RUN_ID_RANGE if field == "run_id" else (1, MAX_SIZE)
        if not low <= value <= high:
            what = "an integer that fits 64 bits" if field == "run_id" else f"a positive integer of at most {MAX_SIZE}"
            raise MetaError(f"{source}: {field} must be {what}, got {shown(value)}")
        values[field] = int(value)
    product = values["dp_size"] * values["pp_size"] * values["tp_size"] * values["dsp_size"]
    if values["world_size"] != product:
        raise MetaError(f"{source}: world_size {values['world_size']} != dp_size*pp_size*tp_size*dsp_size = {product}")
    optional: dict[str, int] = {}
    for field in OPTIONAL_FIELDS:
        value = raw.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**63:
            raise MetaError(f"{source}: {field} must be a whole number of bytes in [0, 2^63), got {shown(value)}")
        optional[field] = int(value)
    return JobMeta(trial_name=trial_name, **values, **optional)


def default_meta_path(trace_path: str | Path) -> Path:
    """``dir/trace-NAME.ext`` → ``dir/meta-NAME.yaml`` (``ext`` may be compound: ``.csv.gz``)."""
    trace_path = Path(trace_path)
    name = trace_path.name.split(".")[0]
    if name.startswith("trace-"):
        name = name[len("trace-") :]
    return trace_path.with_name(f"meta-{name}.yaml")
