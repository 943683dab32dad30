"""A short, readable text summary of an analysis."""

from __future__ import annotations

import numpy as np

from graphwia.analyses.standard import Analysis, ranked_workers

TOP = 3


def summary_lines(analysis: Analysis) -> list[str]:
    """S, launch slowdown, M_S/M_W and the top op types, DP ranks and stages."""
    meta = analysis.meta
    lines = [
        f"{analysis.name}: {len(analysis.steps)} step(s), {analysis.dag.n_ops:,} op instances, "
        f"{len(analysis.worker_table)} workers (dp {meta.dp_size} x pp {meta.pp_size})",
        f"  slowdown S          {analysis.slowdown:.4f}   (mean step {np.mean(analysis.step_time_nodelay):.3f} s, "
        f"ideal {np.mean(analysis.step_time_ideal):.3f} s)",
        f"  launch slowdown     {analysis.launch_slowdown:.4f}",
        f"  M_S (last stage)    {analysis.Ms:.1%}",
        f"  M_W (top workers)   {analysis.Mw:.1%}",
    ]
    n_trace = len(analysis.trace.steps)
    if len(analysis.steps) < n_trace:  # say which steps the ideal's typical weights come from
        source = f"all {n_trace} steps of the trace" if analysis.typical_from == "all" else "the analysed steps only"
        lines.insert(1, f"  typical weights     from {source}")
    for key, title in (("optype", "op types"), ("dp_rank", "DP ranks"), ("stage", "stages")):
        if key in analysis.blocking:
            top = ", ".join(f"{name} {value:.3f}" for name, value in analysis.blocking[key].top(TOP))
            lines.append(f"  top {title:<12}{top}")
    if "worker" in analysis.blocking:
        top = ", ".join(f"(dp {dp}, stage {stage}) {value:.3f}"
                        for (dp, stage), value in analysis.blocking["worker"].top(TOP))
        lines.append(f"  top {'workers':<12}{top}")
    if "optype" not in analysis.blocking:
        lines.append("  (S below the decomposition threshold: no attribution)")
    lines.append(f"  verdict: {verdict(analysis)}")
    return lines


#: A job with S at or above this is a straggling job (the paper's threshold).
STRAGGLER_S = 1.1
#: M_W / M_S at or above this names the cause of a straggling job.
CAUSE_M = 0.5
CAUSES = ("worker", "stage", "other", "none")


def classify_cause(s: float, ms: float, mw: float) -> str:
    """``worker`` (M_W ≥ 0.5), else ``stage`` (M_S ≥ 0.5), else ``other``; ``none`` when S < 1.1.

    Below 1.1 the slowdown is too small for M_S / M_W (ratios of it) to mean anything.
    """
    if not s >= STRAGGLER_S:
        return "none"
    if mw >= CAUSE_M:
        return "worker"
    if ms >= CAUSE_M:
        return "stage"
    return "other"


def verdict(analysis: Analysis) -> str:
    """One line naming the dominant cause, by :func:`classify_cause`."""
    s, ms, mw = analysis.slowdown, analysis.Ms, analysis.Mw
    cause = classify_cause(s, ms, mw)
    if cause == "none":
        return f"no significant straggling (S = {s:.3f} < {STRAGGLER_S})"
    if cause == "worker":
        workers = analysis.worker_table
        worst = ranked_workers(workers)[0]
        return (f"individual worker problem: the top 3% of workers explain {mw:.0%} of the slowdown "
                f"(worst: dp_rank {int(workers['dp_rank'][worst])}, stage {int(workers['stage'][worst])})")
    if cause == "stage":
        return f"stage partitioning imbalance: the last stage explains {ms:.0%} of the slowdown"
    return "no single worker or stage explains the slowdown (e.g. sequence-length imbalance or many slow workers)"

