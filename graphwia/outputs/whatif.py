"""Writers of what-if results: the ``--json`` document and one Perfetto timeline per scenario."""

from __future__ import annotations

from pathlib import Path

from graphwia.analyses.whatif import WhatIfResult
from graphwia.errors import UsageError

__all__ = ["timeline_path", "whatif_dict", "write_whatif_timelines"]


def whatif_dict(result: WhatIfResult, *, per_step: bool = False) -> dict:
    """``{"baseline", "baseline_step_time", "scenarios": [{"name", "step_time", "speedup"}]}``.

    With ``per_step``, also ``baseline_per_step`` (step → span) and each
    scenario's ``per_step`` (step → {step_time, speedup}); steps are string keys.
    """
    out: dict = {"baseline": result.baseline, "baseline_step_time": result.baseline_step_time}
    if per_step:
        out["baseline_per_step"] = {str(s): float(v) for s, v in zip(result.steps, result.baseline_span)}
    mean_step_time = result.step_time.mean(axis=0)
    step_speedup = result.step_speedup
    entries = []
    for i, (name, speedup) in enumerate(result.speedup.items()):
        entry = {"name": name, "step_time": float(mean_step_time[i]), "speedup": float(speedup)}
        if per_step:
            entry["per_step"] = {
                str(s): {"step_time": float(t), "speedup": float(x)}
                for s, t, x in zip(result.steps, result.step_time[:, i], step_speedup[:, i])
            }
        entries.append(entry)
    out["scenarios"] = entries
    return out


def timeline_path(out_dir: str | Path, trial: str, scenario: str) -> Path:
    """Where :func:`write_whatif_timelines` puts the timeline of ``scenario`` (both names must be valid names)."""
    from graphwia.utils.names import check_name

    check_name(trial, what="trial name", source=f"timelines in {out_dir}")
    check_name(scenario, what="scenario name", source=f"timelines in {out_dir}")
    return Path(out_dir) / f"whatif-{scenario}-{trial}.json.gz"


def write_whatif_timelines(result: WhatIfResult, out_dir: str | Path) -> list[Path]:
    """Write one Perfetto timeline (gzip JSON) per scenario to ``out_dir`` as one set (those of an earlier
    run of this trial's scenarios that this run does not write are removed); return the paths.

    ``result`` must hold every op's times (``run_whatif(..., times=True)``); a UsageError says so otherwise.
    """
    from graphwia.outputs.timeline import drawn_start, write_bars_timeline
    from graphwia.utils.io import output_set

    sim, dag = result.simulation, result.dag
    if sim.start is None or sim.end is None:
        raise UsageError("timelines are drawn from every op's times: run the scenarios with times=True")
    paths = [timeline_path(out_dir, dag.meta.trial_name, name) for name in result.names]
    with output_set(out_dir, key=f"whatif:{dag.meta.trial_name}"):
        for i, path in enumerate(paths, start=1):
            end = sim.end[:, i]
            write_bars_timeline(path, dag, drawn_start(dag, sim.start[:, i], end, result.column_weight(i)), end)
    return paths
