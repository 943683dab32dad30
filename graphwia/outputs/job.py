"""Everything ``analyze`` writes for one job, in one place.

Beside the published result files (``result-``, ``ms-``, ``mw-<trial>.json``)
and the ranked causes of the slowdown (``causes-<trial>.json``,
:mod:`graphwia.outputs.causes`) it writes, unless pictures are turned off:

* ``heatmap-<trial>.png``: worker score min(S_dp_rank, S_stage) (SPEC §5.9);
* ``heatmap-worker-<trial>.png``: exact per-worker S_w (when it was computed);
* ``timeline-<trial>.json.gz``: the trace as recorded, for Perfetto;
* ``ideal-timeline-<trial>.json.gz``: the simulated ideal (SPEC §6);
* ``report-<trial>.html``: the self-contained report linking them all.

The files of one run form one set (:func:`graphwia.utils.io.output_set`): they
replace the earlier run's files of the same trial together, a file of that
trial the run does not write again (pictures after ``plots=False``, the
worker heatmap without S_w) is removed, and every path must lie inside the
output directory. A value that is not a number (a ratio with a zero
denominator) is written as ``null``; :func:`undefined_values` words a warning
for each file holding one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphwia.analyses.standard import Analysis
from graphwia.outputs.causes import causes_path, write_causes
from graphwia.outputs.results import explanation_dict, result_dict, result_paths, write_results
from graphwia.utils.io import nonfinite_fields, output_set
from graphwia.utils.names import check_name

__all__ = [
    "PICTURES",
    "ideal_timeline_events",
    "observed_timeline_events",
    "output_paths",
    "undefined_values",
    "write_outputs",
    "write_pictures",
    "write_timelines",
]

PICTURES = {
    "heatmap": "heatmap-{}.png",
    "heatmap-worker": "heatmap-worker-{}.png",
    "timeline": "timeline-{}.json.gz",
    "ideal-timeline": "ideal-timeline-{}.json.gz",
    "report": "report-{}.html",
}


def output_paths(out_dir: str | Path, trial: str) -> dict[str, Path]:
    """Where :func:`write_outputs` puts each file of ``trial`` (a valid name, see
    :func:`graphwia.utils.names.check_name`), by kind."""
    out_dir = Path(out_dir)
    check_name(trial, what="trial name", source=f"outputs in {out_dir}")
    return {
        **result_paths(out_dir, trial),
        "causes": causes_path(out_dir, trial),
        **{kind: out_dir / name.format(trial) for kind, name in PICTURES.items()},
    }


def write_outputs(analysis: Analysis, out_dir: str | Path, *, plots: bool = True) -> list[Path]:
    """Write the result JSONs and, when ``plots``, the pictures, timelines and report, as one set.

    A run failing half way leaves every earlier output as it was; a run that
    succeeds leaves exactly its own files of this trial in ``out_dir``.
    """
    output_paths(out_dir, analysis.name)  # the name is checked before anything is written
    with output_set(out_dir, key=f"analyze:{analysis.name}"):
        written = list(write_results(analysis, out_dir).values())
        written.append(write_causes(causes_path(out_dir, analysis.name), analysis.causes))
        if plots:
            written += write_pictures(analysis, out_dir)
    return written


def undefined_values(analysis: Analysis) -> list[str]:
    """A warning for each result file of ``analysis`` that holds values which are not numbers (written as null)."""
    files = {
        "result": result_dict(analysis),
        "ms": explanation_dict(analysis.ms, "Ms"),
        "mw": explanation_dict(analysis.mw, "Mw"),
    }
    warnings = []
    for kind, data in files.items():
        fields = nonfinite_fields(data)
        if fields:
            shown = ", ".join(fields[:3]) + (f" and {len(fields) - 3} more" if len(fields) > 3 else "")
            warnings.append(
                f"{kind}-{analysis.name}.json: {shown} undefined (a ratio with a zero denominator), written as null"
            )
    return warnings


def write_pictures(analysis: Analysis, out_dir: str | Path) -> list[Path]:
    """Heatmaps, both timelines and the HTML report (which embeds the heatmaps)."""
    # matplotlib costs ~0.4 s to import: only runs that draw pay for it.
    from graphwia.outputs.heatmap import heatmap_png, worker_grid, write_png
    from graphwia.outputs.report import write_report

    paths = output_paths(out_dir, analysis.name)
    heatmaps = {
        "Worker score min(S_dp_rank, S_stage), as ranked by M_W": (
            paths["heatmap"],
            heatmap_png(
                worker_grid(analysis.workers, column="score"),
                title=f"{analysis.name}: worker score",
                label="min(S_dp_rank, S_stage)",
            ),
        )
    }
    if analysis.workers["S_worker"].notna().any():
        heatmaps["Exact per-worker slowdown S_w"] = (
            paths["heatmap-worker"],
            heatmap_png(
                worker_grid(analysis.workers, column="S_worker"),
                title=f"{analysis.name}: exact per-worker S_w",
                label="S_w",
            ),
        )
    written = [write_png(path, png) for path, png in heatmaps.values()]
    written += write_timelines(analysis, paths["timeline"], paths["ideal-timeline"])
    links = {"The trace as recorded": paths["timeline"].name, "The simulated ideal": paths["ideal-timeline"].name}
    written.append(write_report(paths["report"], analysis, {k: png for k, (_, png) in heatmaps.items()}, links))
    return written


def ideal_timeline_events(analysis: Analysis) -> list[dict]:
    """Events of the simulated ideal: a group member's bar spans its transfer time, ending at its end."""
    from graphwia.outputs.timeline import timeline_events

    return timeline_events(analysis.dag, *_ideal_bars(analysis))


def observed_timeline_events(analysis: Analysis) -> list[dict]:
    """Events of the trace as recorded (times relative to each step's start).

    As in the published timelines, a group member is drawn over its transfer
    time, ending at its recorded end: the time it spent waiting for its peers
    shows as a gap, as in the ideal timeline.
    """
    from graphwia.outputs.timeline import timeline_events

    return timeline_events(analysis.dag, *_observed_bars(analysis))


def write_timelines(analysis: Analysis, observed_path: str | Path, ideal_path: str | Path) -> list[Path]:
    """Write the recorded and the ideal timeline (gzip Chrome trace events): the files hold
    :func:`observed_timeline_events` and :func:`ideal_timeline_events`."""
    from graphwia.outputs.timeline import write_bars_timeline

    # Streamed as JSON text without building a dict per op (AR: ~4x faster), a chunk of ops at a time.
    return [
        write_bars_timeline(observed_path, analysis.dag, *_observed_bars(analysis)),
        write_bars_timeline(ideal_path, analysis.dag, *_ideal_bars(analysis)),
    ]


def _ideal_bars(analysis: Analysis) -> tuple[np.ndarray, np.ndarray]:
    """(drawn start, end) of each op's bar in the simulated ideal."""
    from graphwia.outputs.timeline import drawn_start

    ideal = analysis.simulations["ideal"]
    assert ideal.start is not None and ideal.end is not None  # analyze keeps the times of its three simulations
    start, end = ideal.start[:, 0], ideal.end[:, 0]
    return drawn_start(analysis.dag, start, end, analysis.ideal), end


def _observed_bars(analysis: Analysis) -> tuple[np.ndarray, np.ndarray]:
    """(drawn start, end) of each op's bar as recorded."""
    from graphwia.outputs.timeline import drawn_start

    ops = analysis.dag.table
    start, end = ops["start"].astype(np.float64), ops["end"].astype(np.float64)
    return drawn_start(analysis.dag, start, end, analysis.weights.weight), end
