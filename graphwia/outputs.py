"""Everything ``analyze`` writes for one job, in one place."""

from __future__ import annotations

from pathlib import Path

from .analysis import Analysis
from .io import all_or_nothing
from .results import write_results


def write_outputs(analysis: Analysis, out_dir: str | Path, plots: bool = True) -> list[Path]:
    """Write the result JSONs and, when ``plots``, the pictures, timelines and report."""
    with all_or_nothing():  # a run failing half way leaves every earlier output as it was
        written = list(write_results(analysis, out_dir).values())
    return written
