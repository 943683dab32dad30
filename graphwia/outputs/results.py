"""Writers of the published result files (SPEC §6): result, ms and mw JSON."""

from __future__ import annotations

from pathlib import Path

from graphwia.analyses.standard import Analysis
from graphwia.utils.io import write_json


def result_paths(out_dir: str | Path, trial: str) -> dict[str, Path]:
    """Where :func:`write_results` puts each file for ``trial``."""
    out_dir = Path(out_dir)
    return {kind: out_dir / f"{kind}-{trial}.json" for kind in ("result", "ms", "mw")}


def write_results(analysis: Analysis, out_dir: str | Path) -> dict[str, Path]:
    """Write ``result-``, ``ms-`` and ``mw-<trial>.json`` atomically; return their paths."""
    paths = result_paths(out_dir, analysis.name)
    write_json(paths["result"], analysis.result)
    write_json(paths["ms"], analysis.ms)
    write_json(paths["mw"], analysis.mw)
    return paths
