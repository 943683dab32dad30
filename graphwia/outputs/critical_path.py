"""Writers of critical paths: JSON, CSV, a Perfetto timeline with the paths overlaid, summary text."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from graphwia.analyses.critical_path import ELEMENT_COLUMNS, CriticalPaths, PathShare, PathSummary, step_picker
from graphwia.errors import ArgumentError
from graphwia.utils.io import atomic_path, write_json

__all__ = [
    "OUTPUT_FORMATS",
    "check_output",
    "critical_paths_dict",
    "critical_timeline_events",
    "summary_dict",
    "summary_lines",
    "write_critical_paths",
    "write_critical_timeline",
]

#: Output formats of :func:`write_critical_paths`, by extension.
OUTPUT_FORMATS = (".json", ".csv")


def critical_paths_dict(paths: CriticalPaths) -> dict:
    """``{"scenario", "steps": [{"step", "step_time", "path": [...]}], "summary"}`` (see :func:`summary_dict`)."""
    columns = list(ELEMENT_COLUMNS)
    steps = []
    for step, rows in paths.elements.groupby("step", sort=True):
        path = [
            _json_element(dict(zip(columns, values))) for values in rows[columns].itertuples(index=False, name=None)
        ]
        steps.append({"step": int(step), "step_time": paths.step_time[int(step)], "path": path})
    return {"scenario": paths.scenario, "steps": steps, "summary": summary_dict(paths.summary())}


def summary_dict(summary: PathSummary) -> dict:
    """The JSON form of a path summary: ``{"steps", "mean_step_time", "mean_path_length", "by_optype",
    "by_stage", "by_worker"}``, each ``by_*`` an object of ``{"time", "share"}`` keyed by op type, stage
    (``"3"``) or worker (``"dp_rank,stage"``, e.g. ``"1,2"``), the most time first; a worker also has
    ``steps_on_path`` and ``step_fraction``."""
    return {
        "steps": summary.steps,
        "mean_step_time": summary.mean_step_time,
        "mean_path_length": summary.mean_path_length,
        "by_optype": {optype: _share(entry) for optype, entry in summary.by_optype.items()},
        "by_stage": {str(stage): _share(entry) for stage, entry in summary.by_stage.items()},
        "by_worker": {
            _worker(worker): {
                **_share(entry),
                "steps_on_path": entry.steps_on_path,
                "step_fraction": entry.step_fraction,
            }
            for worker, entry in summary.by_worker.items()
        },
    }


def _share(entry: PathShare) -> dict:
    return {"time": entry.time, "share": entry.share}


def _worker(worker: tuple[int, int]) -> str:
    """A worker as the JSON key and summary text write it: ``"dp_rank,stage"``."""
    return f"{worker[0]},{worker[1]}"


def critical_timeline_events(paths: CriticalPaths) -> list[dict]:
    """Perfetto events of the walked steps with the paths marked and joined by flow arrows."""
    from graphwia.outputs.timeline import drawn_start, timeline_events

    dag, pick = paths.dag, step_picker(paths.dag, paths.steps)
    if pick is not None:
        dag = paths.dag.select_steps(paths.steps)
    start, end, weight = (v if pick is None else pick(v) for v in (paths.start, paths.end, paths.weight))
    flows = [_renumbered(paths, paths.path(step), pick is not None) for step in paths.steps]
    marked = np.zeros(dag.n_ops, dtype=bool)
    for chain in flows:
        marked[chain] = True
    return timeline_events(dag, drawn_start(dag, start, end, weight), end, marked=marked, flows=flows)


def _renumbered(paths: CriticalPaths, ops: np.ndarray, selected: bool) -> np.ndarray:
    """Op ids of the paths' DAG as ids of the DAG of the walked steps only."""
    if not selected:
        return ops
    per_step = paths.dag.ops_per_step
    step_of = paths.dag.steps[ops // per_step]
    return np.searchsorted(np.asarray(paths.steps), step_of) * per_step + ops % per_step


def _json_element(element: dict) -> dict:
    """Plain JSON values; −1 model chunk / microbatch (none) become null."""
    out = {}
    for key, value in element.items():
        value = value.item() if isinstance(value, np.generic) else value
        if key in ("mb_id", "chunk") and value < 0:
            value = None
        out[key] = value if key != "link" or value else None
    return out


def check_output(*, path: str | Path | None = None, timeline: str | Path | None = None) -> None:
    """Raise :class:`UsageError` early when an output path has an extension we cannot write."""
    if path is not None and Path(path).suffix.lower() not in OUTPUT_FORMATS:
        raise ArgumentError("path", path, f"critical paths are written as {' or '.join(OUTPUT_FORMATS)}")
    if timeline is not None and not str(timeline).lower().endswith(".json.gz"):
        raise ArgumentError("timeline", timeline, "a timeline is written as gzip-compressed JSON, name it *.json.gz")


def write_critical_paths(paths: CriticalPaths, path: str | Path) -> Path:
    """Write the paths as JSON (:func:`critical_paths_dict`) or CSV (one row per element), atomically."""
    check_output(path=path)
    if Path(path).suffix.lower() == ".json":
        return write_json(path, critical_paths_dict(paths))
    with atomic_path(path) as tmp:
        paths.elements.to_csv(tmp, index=False)
    return Path(path)


def write_critical_timeline(paths: CriticalPaths, path: str | Path) -> Path:
    """Perfetto timeline of the walked steps with the critical paths overlaid (gzip JSON)."""
    from graphwia.outputs.timeline import write_timeline

    check_output(timeline=path)
    return write_timeline(path, critical_timeline_events(paths))


def summary_lines(paths: CriticalPaths, *, top: int = 3) -> list[str]:
    """A few lines: step time, path length, and who is on the path most."""
    summary = paths.summary()
    lines = [
        f"critical paths ({paths.scenario}) of {summary.steps} step(s): mean step time "
        f"{summary.mean_step_time:.3f} s, {summary.mean_path_length:.1f} ops per path"
    ]
    groups: tuple[tuple[Mapping[Any, PathShare], str], ...] = (
        (summary.by_optype, "op types"),
        (summary.by_stage, "stages"),
    )
    for by, title in groups:
        parts = ", ".join(f"{name} {entry.share:.1%}" for name, entry in list(by.items())[:top])
        lines.append(f"  time on path, {title:<9} {parts}")
    workers = list(summary.by_worker.items())
    parts = ", ".join(
        f"({_worker(worker)}) {entry.step_fraction:.0%} of steps, {entry.share:.1%} of time"
        for worker, entry in workers[:top]
    )
    lines.append(f"  workers most on path    {parts}")
    return lines
