"""A short, readable text summary of an analysis, and the wording of its causes.

The verdict and every sentence about a cause are worded here from the typed
:class:`~graphwia.analyses.causes.Causes` of the analysis
(:attr:`Analysis.causes <graphwia.analyses.standard.Analysis.causes>`); the
report and the fleet page reuse these sentences.
"""

from __future__ import annotations

import math

import numpy as np

from graphwia.analyses.causes import NAMED_SHARE, STRAGGLER_S, Cause
from graphwia.analyses.standard import TOP_WORKER_PERCENT, Analysis

__all__ = [
    "CAUSE_TITLE",
    "DOMINANT_OPTYPE",
    "NAMED_MEMBERS",
    "OVER_100",
    "TOP",
    "describe",
    "dominant_optype",
    "evidence_text",
    "ms_text",
    "mw_text",
    "over_100",
    "percent",
    "ruled_out_text",
    "share_text",
    "summary_lines",
    "top_workers_text",
    "verdict",
]

TOP = 3
#: The top op type is named in the verdict when its attributed excess (S_t − 1) is at least this share of
#: S − 1. AR: backward-compute 0.60, SE: backward-compute 0.77 are named; ST's forward-compute (0.49)
#: shares the slowdown with backward-compute and is not.
DOMINANT_OPTYPE = 0.5
#: Workers or stages listed by name in a sentence; more are counted.
NAMED_MEMBERS = 3

#: What each cause is, in a few words.
CAUSE_TITLE = {
    "worker": "individual worker problem",
    "stage": "stage partitioning imbalance",
    "sequence-length": "sequence-length imbalance",
    "gc": "garbage-collection pauses",
    "communication": "slow communication",
    "launch": "CPU-side launch delays",
}


def summary_lines(analysis: Analysis) -> list[str]:
    """S, launch slowdown, M_S/M_W, the top op types, DP ranks and stages, the causes and the verdict."""
    meta = analysis.meta
    causes = analysis.causes
    lines = [
        f"{analysis.name}: {len(analysis.steps)} step(s), {analysis.dag.n_ops:,} op instances, "
        f"{len(analysis.worker_table)} workers (dp {meta.dp_size} x pp {meta.pp_size})",
        f"  slowdown S          {analysis.slowdown:.4f}   (mean step {np.mean(analysis.step_time_nodelay):.3f} s, "
        f"ideal {np.mean(analysis.step_time_ideal):.3f} s)",
        f"  launch slowdown     {analysis.launch_slowdown:.4f}",
        f"  M_S (last stage)    {ms_text(analysis)}",
        f"  M_W (top workers)   {mw_text(analysis)}",
    ]
    n_trace = len(analysis.trace.steps)
    if len(analysis.steps) < n_trace:  # say which steps the ideal's typical weights come from
        source = f"all {n_trace} steps of the trace" if analysis.typical_from == "all" else "the analysed steps only"
        lines.insert(1, f"  typical weights     from {source}")
    for key, title in (("optype", "op types"), ("dp_rank", "DP ranks"), ("stage", "stages")):
        if key in analysis.blocking:
            top = ", ".join(f"{name} {value:.3f}" for name, value in analysis.blocking[key].top(TOP))
            lines.append(f"  top {title:<16}{top}")
    if "worker" in analysis.blocking:
        workers: list[str] = []
        for worker, value in analysis.blocking["worker"].top(TOP):
            assert isinstance(worker, tuple)  # S_w is keyed by (dp_rank, stage)
            dp, stage = worker
            workers.append(f"(dp {dp}, stage {stage}) {value:.3f}")
        top = ", ".join(workers)
        lines.append(f"  top {'workers':<16}{top}")
    if "optype" not in analysis.blocking:
        lines.append("  (S below the decomposition threshold: no attribution)")
    ranking = ", ".join(f"{c.cause} {percent(c.share)}" for c in causes.ranked) or "none found"
    lines.append(f"  causes              {ranking}")
    lines.append(f"  verdict: {verdict(analysis)}")
    if over_100(analysis):
        lines.append(f"  ({OVER_100})")
    return lines


#: Why a share can exceed 100%.
OVER_100 = (
    "a share over 100%: with those ops made typical the job runs faster than the all-typical ideal, "
    "because the other ops are faster than their typical values"
)


def over_100(analysis: Analysis) -> bool:
    """Whether a number shown as a share of the slowdown (M_S, M_W, a cause) exceeds 100%."""
    shares = (
        [c.share for c in analysis.causes.ranked if c.share is not None]
        + [analysis.Mw]
        + ([analysis.Ms] if analysis.meta.pp_size > 1 else [])
    )
    return any(round(x, 3) > 1 for x in shares if math.isfinite(x))


def percent(share: float | None) -> str:
    """A share as a percentage with one decimal; a value that rounds to zero is "0.0%", never "-0.0%".

    A share that was not computed (None) or is not finite reads "n/a".
    """
    if share is None or not math.isfinite(share):
        return "n/a"
    return "0.0%" if round(share * 1000) == 0 else f"{share:.1%}"


def ms_text(analysis: Analysis) -> str:
    """M_S, or why it does not apply."""
    if analysis.meta.pp_size < 2:
        return "n/a (pp = 1: no pipeline stages)"
    return percent(analysis.Ms)


def top_workers_text(analysis: Analysis) -> str:
    """The workers M_W makes typical, as a count: "the worst 1 of 16 workers"."""
    n = len(analysis.worker_table)
    return f"the worst {math.ceil(TOP_WORKER_PERCENT * n / 100)} of {n} workers"


def mw_text(analysis: Analysis) -> str:
    """M_W with the count of workers it removes."""
    text = f"{percent(analysis.Mw)}  ({top_workers_text(analysis)})"
    if analysis.meta.dp_size < 2:
        text += "; with dp = 1 a worker is its whole stage"
    return text


def verdict(analysis: Analysis) -> str:
    """One line: what was measured and the cause(s) it points to (see :data:`NAMED_SHARE`)."""
    s, causes = analysis.slowdown, analysis.causes
    named = causes.named
    if not named:
        if s < analysis.decompose_threshold:
            return (
                f"no significant straggling: S = {s:.3f} is below the decomposition threshold "
                f"{analysis.decompose_threshold:g}, nothing to explain"
            )
        if not causes.ranked:
            quiet = "no significant straggling, and " if s < STRAGGLER_S else ""
            return (
                f"{quiet}no known cause's signature found (S = {s:.3f}): no slow worker, long stage, "
                "sequence-length variation, gc pause, slow communication channel or launch delays"
            )
        first = causes.ranked[0]
        return (
            f"no single cause explains {NAMED_SHARE:.0%} of the slowdown (S = {s:.3f}); the largest: "
            f"{describe(first, analysis)}"
        )
    text = describe(named[0], analysis)
    if len(named) > 1:
        text += f"; then {describe(named[1], analysis)}"
    dominant = dominant_optype(analysis)
    if dominant:
        text += f"; most of S is in {dominant[0]} (S_t = {dominant[1]:.3f} of S = {s:.3f})"
    if s < STRAGGLER_S:
        text = f"small slowdown (S = {s:.3f} < {STRAGGLER_S}), caused by {text}"
    return text


def dominant_optype(analysis: Analysis) -> tuple[str, float] | None:
    """The op type whose attributed slowdown holds at least :data:`DOMINANT_OPTYPE` of S − 1, with its S_t."""
    by_optype = analysis.blocking.get("optype")
    if by_optype is None or not analysis.slowdown > 1:
        return None
    ((name, value),) = by_optype.top(1)
    return (str(name), float(value)) if value - 1 >= DOMINANT_OPTYPE * (analysis.slowdown - 1) else None


def describe(cause: Cause, analysis: Analysis) -> str:
    """A found cause in one sentence: its title, what identified it, and its share."""
    return f"{CAUSE_TITLE[cause.cause]}: {evidence_text(cause, analysis)}, {share_text(cause)}"


def share_text(cause: Cause) -> str:
    """The share of a found cause, in words."""
    assert cause.share is not None, f"cause {cause.cause!r} was not found: it has no share"
    if cause.cause == "launch":
        return f"accounting for {percent(cause.share)} of the recorded step time above the ideal"
    return f"explaining {percent(cause.share)} of the slowdown"


def evidence_text(cause: Cause, analysis: Analysis) -> str:
    """What identified a found cause, in words (the numbers of ``cause.evidence``)."""
    e = cause.evidence
    if cause.cause == "worker":
        workers = e["workers"]
        names = "; ".join(f"dp_rank {w['dp_rank']}, stage {w['stage']}" for w in workers[:NAMED_MEMBERS])
        if e["slow_workers"] > NAMED_MEMBERS:
            names += "; …"
        worst = workers[0]["compute_vs_stage_peers"]
        if len(workers) == 1:
            return (
                f"the worst 1 of {e['of_workers']} workers ({names}) computes {worst:.2f}x as long as "
                "the other workers of its stage"
            )
        return (
            f"the worst {e['slow_workers']} of {e['of_workers']} workers ({names}) compute up to "
            f"{worst:.2f}x as long as the other workers of their stage"
        )
    if cause.cause == "stage":
        stages, factor = e["stages"], e["stage_compute_vs_typical"]
        last = analysis.meta.pp_size - 1
        named = ", ".join(map(str, stages[:NAMED_MEMBERS])) + (", …" if len(stages) > NAMED_MEMBERS else "")
        which = " (the last)" if stages == [last] else ""
        if len(stages) == 1:
            return f"stage {named} of {len(factor)}{which} computes {factor[stages[0]]:.2f}x the job's typical compute"
        return f"stages {named} of {len(factor)} compute up to {factor[stages[0]]:.2f}x the job's typical compute"
    if cause.cause == "sequence-length":
        cv = [x for x in e["cv_per_stage"] if x is not None]
        spread = (
            f"{min(cv):.2f}"
            if len(cv) == 1 or round(min(cv), 2) == round(max(cv), 2)
            else f"{min(cv):.2f}–{max(cv):.2f}"
        )
        shared = (
            ""
            if e["cross_stage_correlation"] is None
            else f", alike on every stage of a replica (correlation {e['cross_stage_correlation']:.2f})"
        )
        return (
            f"a microbatch's compute varies from microbatch to microbatch (CV {spread}){shared}; "
            f"{e['atypical_microbatches']:,} of {e['of_microbatches']:,} microbatches are atypical on every stage"
        )
    if cause.cause == "gc":
        parts = []
        if e["gc_pauses"]:
            parts.append(f"{e['gc_pauses']:,} of {e['of_gc_ops']:,} gc ops pause (mean {e['mean_pause_s']:.3f} s)")
        if e["compute_outliers"]:
            parts.append(
                f"{e['compute_outliers']:,} compute ops take over {e['thresholds']['outlier']:g}x "
                "their worker's usual time at random points"
            )
        return " and ".join(parts)
    if cause.cause == "communication":
        worst = e["channels"][0]
        return (
            f"in {e['slow_channels']} of {e['of_channels']} channels (an op type on a worker) most transfers "
            f"take ≥ {e['threshold']:g}x the typical time (worst: {worst['optype']} on dp_rank "
            f"{worst['dp_rank']}, stage {worst['stage']}, {worst['mean_vs_typical']:.1f}x on average)"
        )
    top = e.get("top_optype")
    mostly = f", mostly before {top['optype']}" if top else ""
    return f"launch slowdown {e['launch_slowdown']:.3f}{mostly}"


def ruled_out_text(cause: Cause, analysis: Analysis) -> str:
    """Why a cause was not found, with the numbers that decided it."""
    e = cause.evidence
    if e.get("applicable") is False:
        return f"not applicable: {e['reason']}"
    if e.get("below_threshold"):
        return (
            f"its signature is present, but S = {analysis.slowdown:.3f} is below the decomposition "
            f"threshold {analysis.decompose_threshold:g}"
        )
    if cause.cause == "worker":
        return (
            f"no worker computes ≥ {e['threshold']:.2f}x as long as its stage peers "
            f"(largest {e['largest_vs_stage_peers']:.3f}x)"
        )
    if cause.cause == "stage":
        longest = max((x for x in e["stage_compute_vs_typical"] if x is not None), default=float("nan"))
        return f"no stage computes ≥ {e['threshold']:.2f}x the typical (longest {longest:.3f}x)"
    if cause.cause == "sequence-length":
        cv = [x for x in e["cv_per_stage"] if x is not None]
        corr = e["cross_stage_correlation"]
        text = f"microbatch compute CV {float(np.median(cv)):.3f} (needs ≥ {e['thresholds']['cv']:g})" + (
            "" if corr is None else f", cross-stage correlation {corr:.2f} (needs ≥ {e['thresholds']['correlation']:g})"
        )
        if "atypical_microbatches" in e:
            text += "; no microbatch is atypical on every stage"
        return text
    if cause.cause == "gc":
        return "no gc pause and no compute outlier"
    if cause.cause == "communication":
        largest = e.get("largest_slow_share")
        worst = "" if largest is None else f" (at most {largest:.0%} of a channel's)"
        return f"no channel has most of its transfers at ≥ {e['threshold']:g}x the typical time{worst}"
    return f"launch slowdown {e['launch_slowdown']:.3f} < {e['threshold']:g}"
