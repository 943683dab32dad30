"""A short, readable text summary of an analysis."""

from __future__ import annotations

from .analysis import Analysis

TOP = 3


def summary_lines(analysis: Analysis) -> list[str]:
    """S, launch slowdown, M_S/M_W and the top op types, DP ranks and stages."""
    r = analysis.result
    steps = len(r["step_t_base"])
    lines = [
        f"{analysis.name}: {steps} step(s), {analysis.dag.n_ops:,} op instances, "
        f"{len(analysis.workers)} workers (dp {analysis.trace.meta.dp_size} x pp {analysis.trace.meta.pp_size})",
        f"  slowdown S          {r['blocking_slowdown']:.4f}   (mean step {_mean(r['step_t_nodelay']):.3f} s, "
        f"ideal {_mean(r['step_t_noblk']):.3f} s)",
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


def verdict(analysis: Analysis, threshold: float = 0.5) -> str:
    """One line naming the dominant cause (M_W / M_S >= ``threshold``, as in the fleet study)."""
    s = analysis.result["blocking_slowdown"]
    if s < 1.1:
        return f"no significant straggling (S = {s:.3f} < 1.1)"
    ms, mw = analysis.ms["Ms"], analysis.mw["Mw"]
    if mw >= threshold and mw >= ms:
        worst = analysis.workers.sort_values(["score", "rank"], ascending=[False, True]).iloc[0]
        return (f"individual worker problem: the top 3% of workers explain {mw:.0%} of the slowdown "
                f"(worst: dp_rank {int(worst.dp_rank)}, stage {int(worst.stage)})")
    if ms >= threshold:
        return f"stage partitioning imbalance: the last stage explains {ms:.0%} of the slowdown"
    return "no single worker or stage explains the slowdown (e.g. sequence-length imbalance or many slow workers)"


def _mean(values: dict) -> float:
    return sum(values.values()) / len(values)
