"""What kind of trace input a path is, decided from names alone.

:func:`~graphwia.trace.files.open_trace` asks here before it imports a reader, so an op table
is opened without importing the Kineto reader; the Kineto reader finds its rank files with the
same :data:`RANK_SUFFIXES`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RANK_SUFFIXES", "is_kineto_input", "is_rank_directory"]


#: File names of per-rank profiler traces.
RANK_SUFFIXES = (".json", ".json.gz")


def is_rank_directory(path: str | Path) -> bool:
    """True when ``path`` is a directory holding rank trace files (``*.json``/``*.json.gz``)."""
    path = Path(path)
    return path.is_dir() and any(p.name.endswith(RANK_SUFFIXES) for p in path.iterdir())


def is_kineto_input(path: str | Path) -> bool:
    """True when ``path`` is a directory of rank traces (or one ``.json``/``.json.gz`` trace file).

    Decided from names alone, so an op table file is opened without importing the Kineto reader.
    """
    path = Path(path)
    return is_rank_directory(path) if path.is_dir() else path.name.endswith(RANK_SUFFIXES)
