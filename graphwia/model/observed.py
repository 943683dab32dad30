"""Weights as recorded (SPEC §3): what every op instance of a DAG took, and its launch delay.

A weight is an op's duration (local op) or transfer time (group member: its
end − the latest start in its group); the launch delay is its start − the
latest end of its intra-worker predecessors (or of the step's start).

This module needs only a DAG's tables, not the DAG module itself, so the
views of a DAG (:mod:`graphwia.model.graph`) reach it without an import
cycle; :mod:`graphwia.model.weights` builds typical and ideal weights on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from graphwia.trace.optable import describe_op

if TYPE_CHECKING:  # pragma: no cover
    from graphwia.model.dag import Dag

__all__ = ["CLOCK_NOISE", "Weights", "observed_weights"]

#: Values at or below this are clock noise and become 0 (SPEC §3).
CLOCK_NOISE = -0.01


@dataclass
class Weights:
    """Observed weights of a DAG's op instances (arrays aligned with ``dag.ops``).

    ``clamped_transfer`` / ``clamped_delay`` count the values SPEC §3 turned to
    0; ``worst_delay`` / ``worst_transfer`` name the op with the most negative
    launch delay / transfer time when some were clamped.
    """

    weight: np.ndarray
    delay: np.ndarray
    clamped_transfer: int = 0
    clamped_delay: int = 0
    worst_delay: str = ""
    worst_transfer: str = ""


def observed_weights(dag: Dag) -> Weights:
    """Durations, transfer times and launch delays of every op instance (SPEC §3)."""
    ops = dag.table
    start = ops["start"]
    end = ops["end"]
    weight = ops["duration"].copy()
    barrier = ops["barrier"]
    members = np.flatnonzero(barrier >= 0)
    clamped_transfer, worst_transfer = 0, ""
    if len(members):
        group = barrier[members] - dag.n_ops
        transfer = end[members] - _latest(dag.n_barriers, group, start[members])[group]
        noise = transfer <= CLOCK_NOISE
        clamped_transfer = int(noise.sum())
        if clamped_transfer:
            i = int(np.argmin(transfer))
            worst_transfer = f"{describe_op(ops, int(members[i]))}: {transfer[i]:.4f} s"
        weight[members] = np.where(noise, 0.0, transfer)

    edges = dag.edges
    intra = edges.via >= 0  # membership and step-start edges carry no op
    latest_pred_end = _latest(dag.n_ops, edges.dst[intra], end[edges.via[intra]])
    # Ops without predecessors are measured from the step start, time 0.
    latest_pred_end[np.isneginf(latest_pred_end)] = 0.0
    delay = start - latest_pred_end
    noise = delay <= CLOCK_NOISE
    worst = ""
    if noise.any():
        i = int(np.argmin(delay))
        worst = f"{describe_op(ops, i)}: {delay[i]:.4f} s"
    delay = np.where(noise, 0.0, delay)
    return Weights(
        weight=weight,
        delay=delay,
        clamped_transfer=clamped_transfer,
        clamped_delay=int(noise.sum()),
        worst_delay=worst,
        worst_transfer=worst_transfer,
    )


def _latest(n: int, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-index maximum of values (−inf where an index has none)."""
    out = np.full(n, -np.inf)
    np.maximum.at(out, index, values)
    return out
