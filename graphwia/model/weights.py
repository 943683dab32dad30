"""Weights taken from the trace (SPEC §3) and their typical values (SPEC §5.3).

A weight is an op's duration (local op) or transfer time (group member: its
end − the latest start in its group); the launch delay is its start − the
latest end of its intra-worker predecessors (or of the step's start).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from graphwia import optypes as T
from graphwia.model.dag import Dag, build_dag
from graphwia.trace.optable import describe_op

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
    return Weights(weight=weight, delay=delay, clamped_transfer=clamped_transfer, clamped_delay=int(noise.sum()),
                   worst_delay=worst, worst_transfer=worst_transfer)


def _latest(n: int, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-index maximum of values (−inf where an index has none)."""
    out = np.full(n, -np.inf)
    np.maximum.at(out, index, values)
    return out


def weighted_dag(trace, steps: Iterable[int] | None = None) -> tuple[Dag, Weights, dict[str, float]]:
    """The DAG of the analysed ``steps`` with its observed weights, and the typical weights.

    Weights and typical values are always taken from the whole trace, so a
    step's numbers do not depend on which other steps are analysed.
    """
    full = build_dag(trace)
    weights = observed_weights(full)
    typical = typical_weights(full, weights)
    if steps is None:
        return full, weights, typical
    dag = full.select_steps(steps)
    rows = np.searchsorted(full.steps, dag.steps)

    def pick(values: np.ndarray) -> np.ndarray:
        return values.reshape(len(full.steps), full.ops_per_step)[rows].ravel()

    return dag, dataclasses.replace(weights, weight=pick(weights.weight), delay=pick(weights.delay)), typical


def typical_weights(dag: Dag, weights: Weights) -> dict[str, float]:
    """Typical weight of each optype over all workers and steps of ``dag``.

    The mean for compute optypes, the median for communication (SPEC §5.3).
    """
    codes = dag.table["optype"]
    order = np.argsort(codes, kind="stable")
    present, first = np.unique(codes[order], return_index=True)
    typical = {}
    for code, values in zip(present, np.split(weights.weight[order], first[1:])):  # one slice per optype
        name = T.ALL_OPTYPES[code]
        typical[name] = float(np.mean(values) if name in T.COMPUTE_OPTYPES else np.median(values))
    return typical


def ideal_weight(dag: Dag, typical: dict[str, float]) -> np.ndarray:
    """Every op's weight replaced by its optype's typical value."""
    table = np.array([typical.get(name, np.nan) for name in T.ALL_OPTYPES])
    return table[dag.table["optype"]]
