"""The published result files (SPEC §6): ``result-``, ``ms-`` and ``mw-<trial>.json``.

This module is the one place where an :class:`~graphwia.analyses.standard.Analysis`
becomes the published JSON schema: string keys (``"3"`` for a step or rank,
``"2,1"`` for a worker), mappings ordered from the largest value down, and
``null`` for an attribution that did not run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphwia.analyses.standard import GROUPINGS, Analysis, Attribution, Explanation, GroupKey, descending
from graphwia.utils.io import write_json

__all__ = ["KINDS", "explanation_dict", "result_dict", "result_paths", "write_results"]

#: The published files, in the order they are written.
KINDS = ("result", "ms", "mw")


def result_dict(analysis: Analysis) -> dict:
    """The ``result-<trial>.json`` content (plus ``blocking_decompose_by_worker`` when S_w was computed)."""
    steps = analysis.steps
    result = {
        "job_meta": analysis.meta.to_dict(),
        "step_t_base": _by_step(steps, analysis.step_time_observed),
        "step_t_nodelay": _by_step(steps, analysis.step_time_nodelay),
        "step_t_noblk": _by_step(steps, analysis.step_time_ideal),
        "launch_slowdown": analysis.launch_slowdown,
        "blocking_slowdown": analysis.slowdown,
        "blocking_step_slowdown": descending(_by_step(steps, analysis.step_slowdown)),
        "launch_step_slowdown": descending(_by_step(steps, analysis.launch_step_slowdown)),
    }
    for name in GROUPINGS:
        for family, parts in (("blocking", analysis.blocking), ("launch", analysis.launch)):
            attribution = parts.get(name)
            result[f"{family}_decompose_by_{name}"] = _overall(attribution)
            result[f"{family}_decompose_by_{name}_per_step"] = _per_step(attribution)
    if "worker" in analysis.blocking or not np.isnan(analysis.worker_table["S_worker"]).all():
        result["blocking_decompose_by_worker"] = _overall(analysis.blocking.get("worker"))
    return result


def explanation_dict(explanation: Explanation, metric: str) -> dict:
    """The ``ms-``/``mw-`` schema: the four mean spans, rem, add and the metric (= rem) called ``metric``."""
    return {
        "trem": explanation.trem,
        "tadd": explanation.tadd,
        "tori": explanation.tori,
        "tideal": explanation.tideal,
        "rem": explanation.rem,
        "add": explanation.add,
        metric: explanation.rem,
    }


def result_paths(out_dir: str | Path, trial: str) -> dict[str, Path]:
    """Where :func:`write_results` puts each file for ``trial``."""
    out_dir = Path(out_dir)
    return {kind: out_dir / f"{kind}-{trial}.json" for kind in KINDS}


def write_results(analysis: Analysis, out_dir: str | Path) -> dict[str, Path]:
    """Write ``result-``, ``ms-`` and ``mw-<trial>.json`` atomically; return their paths."""
    paths = result_paths(out_dir, analysis.name)
    write_json(paths["result"], result_dict(analysis))
    write_json(paths["ms"], explanation_dict(analysis.ms, "Ms"))
    write_json(paths["mw"], explanation_dict(analysis.mw, "Mw"))
    return paths


def _key(group: GroupKey) -> str:
    """A group label as the published files write it: ``"3"``, ``"forward-compute"``, ``"2,1"``."""
    return ",".join(map(str, group)) if isinstance(group, tuple) else str(group)


def _overall(attribution: Attribution | None) -> dict[str, float] | None:
    return None if attribution is None else {_key(k): float(v) for k, v in attribution.overall.items()}


def _per_step(attribution: Attribution | None) -> dict[str, dict[str, float]] | None:
    if attribution is None:
        return None
    return {str(step): {_key(k): float(v) for k, v in parts.items()} for step, parts in attribution.per_step.items()}


def _by_step(steps: np.ndarray, values: np.ndarray) -> dict[str, float]:
    return {str(int(step)): float(v) for step, v in zip(steps, values)}
