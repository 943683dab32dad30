"""A short, readable text summary of an analysis."""

from __future__ import annotations

from graphwia.analyses.standard import Analysis, ranked_workers

TOP = 3


def summary_lines(analysis: Analysis) -> list[str]:
    """S, launch slowdown, M_S/M_W and the top op types, DP ranks and stages."""
    r = analysis.result
    steps = len(r["step_t_base"])
    lines = [
        f"{analysis.name}: {steps} step(s), {analysis.dag.n_ops:,} op instances, "
        f"{len(analysis.worker_table)} workers (dp {analysis.trace.meta.dp_size} x pp {analysis.trace.meta.pp_size})",
        f"  slowdown S          {r['blocking_slowdown']:.4f}   (mean step {mean_value(r['step_t_nodelay']):.3f} s, "
        f"ideal {mean_value(r['step_t_noblk']):.3f} s)",
        f"  launch slowdown     {r['launch_slowdown']:.4f}",
        f"  M_S (last stage)    {analysis.ms['Ms']:.1%}",
        f"  M_W (top workers)   {analysis.mw['Mw']:.1%}",
    ]
    for key, title in (("optype", "op types"), ("dp_rank", "DP ranks"), ("stage", "stages")):
        parts = r.get(f"blocking_decompose_by_{key}")
        if parts:
            top = ", ".join(f"{name} {value:.3f}" for name, value in list(parts.items())[:TOP])
            lines.append(f"  top {title:<12}{top}")
    exact = r.get("blocking_decompose_by_worker")
    if exact:
        top = ", ".join(f"(dp {key.replace(',', ', stage ')}) {value:.3f}" for key, value in list(exact.items())[:TOP])
        lines.append(f"  top {'workers':<12}{top}")
    if r.get("blocking_decompose_by_optype") is None:
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
    s, ms, mw = analysis.result["blocking_slowdown"], analysis.ms["Ms"], analysis.mw["Mw"]
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


def mean_value(values: dict) -> float:
    """Mean of a mapping's values (e.g. a step → seconds field of the result)."""
    return sum(values.values()) / len(values)
