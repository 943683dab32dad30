"""Trace files in and out.

:func:`open_trace` is the one entry point for every input graphwia accepts:

* a ``.parquet`` / ``.csv`` op table (SPEC §1) with its metadata YAML → :func:`~graphwia.trace.optable.load_trace`;
* a directory of per-rank PyTorch profiler traces (``.json`` / ``.json.gz``) →
  :func:`~graphwia.trace.kineto.import_kineto`, in memory, named after the directory.

:func:`write_trace` writes a trace as ``trace-NAME.parquet`` + ``meta-NAME.yaml``, which
:func:`open_trace` reads back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphwia.errors import ArgumentError, UsageError
from graphwia.optypes import ALL_OPTYPES
from graphwia.trace.inputs import RANK_SUFFIXES, is_kineto_input, is_rank_directory
from graphwia.trace.optable import COLUMNS, Trace, load_trace

__all__ = ["RANK_SUFFIXES", "is_kineto_input", "is_rank_directory", "open_trace", "write_trace"]


def open_trace(
    path: str | Path, meta: str | Path | None = None, *, time_unit: str | None = None, **kineto_options
) -> Trace:
    """The validated trace at ``path``: an op table file (with ``meta``, default
    ``meta-NAME.yaml`` beside it; ``time_unit`` as for :func:`~graphwia.trace.optable.load_trace`)
    or a directory of rank traces (``kineto_options`` as for
    :func:`~graphwia.trace.kineto.import_kineto`; no ``meta``: the traces hold the layout)."""
    path = Path(path)
    if is_kineto_input(path):
        if meta is not None:
            raise ArgumentError(
                "meta",
                None,
                "applies to an op table file; a directory of rank traces carries its layout itself",
                source=str(path),
            )
        from graphwia.trace.kineto import import_kineto

        trace, _ = import_kineto(path, **kineto_options)
        return trace
    if path.is_dir():
        raise UsageError(
            f"{path}: a directory without .json/.json.gz rank traces; expected a trace file "
            f"(.parquet or .csv) or a directory of PyTorch profiler traces"
        )
    return load_trace(path, meta, time_unit=time_unit)


def write_trace(trace: Trace, out_dir: str | Path, *, name: str | None = None) -> tuple[Path, Path]:
    """Write ``out_dir/trace-NAME.parquet`` (the SPEC §1 columns, ``optype`` as text) and
    ``out_dir/meta-NAME.yaml``, both or neither; NAME defaults to the trial name. Returns the paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    from graphwia.utils.io import all_or_nothing, atomic_path, write_text

    name = name or trace.meta.trial_name
    table = trace.table
    arrays = {
        column: pa.DictionaryArray.from_arrays(pa.array(table[column].astype(np.int32)), pa.array(ALL_OPTYPES))
        if column == "optype"
        else pa.array(table[column].astype(dtype))
        for column, dtype in COLUMNS.items()
    }
    trace_path = Path(out_dir) / f"trace-{name}.parquet"
    meta_path = Path(out_dir) / f"meta-{name}.yaml"
    with all_or_nothing():
        with atomic_path(trace_path) as tmp:
            pq.write_table(pa.table(arrays), tmp)
        write_text(meta_path, yaml.safe_dump(trace.meta.to_dict(), sort_keys=False))
    return trace_path, meta_path
