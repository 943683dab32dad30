"""Weights taken from the trace (SPEC §3) and their typical values (SPEC §5.3).

The observed weights themselves (:class:`Weights`, :func:`observed_weights`)
are computed in :mod:`graphwia.model.observed` and exported here too.

Typical values are taken over a set of steps chosen by ``typical_from``
(SPEC §5, "Analysing some steps only"): ``"selected"`` (the default) uses the
analysed steps only, so warm-up or broken steps left out do not shape the
ideal; ``"all"`` uses every step of the trace, so a step's numbers do not
depend on which other steps are analysed. Weights themselves never depend on
the choice: steps are independent, so an op's weight is the same whichever
steps are analysed.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from graphwia import optypes as T
from graphwia.errors import UsageError
from graphwia.model.dag import Dag, build_dag
from graphwia.model.observed import CLOCK_NOISE, Weights, observed_weights
from graphwia.trace.optable import Trace
from graphwia.trace.steps import Steps

__all__ = [
    "CLOCK_NOISE",
    "DEFAULT_TYPICAL_FROM",
    "TYPICAL_FROM",
    "TypicalFrom",
    "Weights",
    "check_typical_from",
    "healthy_weight",
    "ideal_weight",
    "observed_weights",
    "stage_typical_weights",
    "typical_source",
    "typical_weights",
    "weighted_dag",
]

TypicalFrom = Literal["selected", "all"]
#: Where typical values come from: the analysed steps (default) or every step of the trace.
TYPICAL_FROM: tuple[TypicalFrom, ...] = ("selected", "all")
DEFAULT_TYPICAL_FROM: TypicalFrom = "selected"


def check_typical_from(typical_from: str) -> TypicalFrom:
    """``typical_from`` if it is one of :data:`TYPICAL_FROM`, else a UsageError naming it."""
    if typical_from not in TYPICAL_FROM:
        raise UsageError(f"typical_from {typical_from!r} is not one of {', '.join(TYPICAL_FROM)}")
    return typical_from


def weighted_dag(
    trace: Trace, *, steps: Steps | None = None, typical_from: TypicalFrom = DEFAULT_TYPICAL_FROM
) -> tuple[Dag, Weights, dict[str, float]]:
    """The DAG of the analysed ``steps`` with its observed weights, and the typical weights.

    The schedule is always inferred from the trace's first step (SPEC §2),
    whichever steps are analysed; the typical weights come from the steps
    ``typical_from`` names (see the module docstring).
    """
    check_typical_from(typical_from)
    dag = build_dag(trace, steps=steps)  # the schedule comes from the whole trace's first step
    weights = observed_weights(dag)
    typical = typical_weights(*typical_source(dag, weights, typical_from))
    return dag, weights, typical


def typical_source(dag: Dag, weights: Weights, typical_from: TypicalFrom) -> tuple[Dag, Weights]:
    """The DAG and weights whose op instances typical values are taken from.

    ``dag`` and ``weights`` themselves, unless ``typical_from`` is ``"all"``
    and ``dag`` holds only some steps of its trace: then the whole trace's,
    built with the same schedule.
    """
    if check_typical_from(typical_from) == "selected" or len(dag.steps) == len(dag.trace.steps):
        return dag, weights
    full = build_dag(dag.trace, schedule=dag.schedule)
    return full, observed_weights(full)


def typical_weights(dag: Dag, weights: Weights) -> dict[str, float]:
    """Typical weight of each optype over all workers and steps of ``dag``.

    The mean for compute optypes, the median for communication (SPEC §5.3).
    """
    codes = dag.table["optype"].astype(np.int64)
    values = _typical_by(codes, weights.weight, codes)
    return {T.ALL_OPTYPES[code]: float(values[code]) for code in np.unique(codes)}


def stage_typical_weights(
    dag: Dag, weights: Weights, *, among: np.ndarray | None = None
) -> dict[tuple[int, str], float]:
    """Typical weight of each optype on each stage, over the ops of ``dag`` where ``among`` is true (default: all).

    ``(stage, optype) → value``, with the statistic of SPEC §5.3 (mean for
    compute optypes, median for communication): what a healthy worker of
    that stage takes. A (stage, optype) with no op in ``among`` is absent.
    """
    keep = slice(None) if among is None else among
    codes = _stage_codes(dag)[keep]
    values = _typical_by(codes, weights.weight[keep], dag.table["optype"][keep].astype(np.int64))
    n = len(T.ALL_OPTYPES)
    return {(int(code) // n, T.ALL_OPTYPES[int(code) % n]): float(values[code]) for code in np.unique(codes)}


def ideal_weight(dag: Dag, typical: dict[str, float]) -> np.ndarray:
    """Every op's weight replaced by its optype's typical value."""
    table = np.array([typical.get(name, np.nan) for name in T.ALL_OPTYPES])
    return table[dag.table["optype"]]


def healthy_weight(dag: Dag, stage_typical: dict[tuple[int, str], float]) -> np.ndarray:
    """Every op's weight replaced by the typical value of its optype on its stage (NaN where absent)."""
    n = len(T.ALL_OPTYPES)
    table = np.full(dag.meta.pp_size * n, np.nan)
    for (stage, name), value in stage_typical.items():
        table[stage * n + T.OPTYPE_CODE[name]] = value
    return table[_stage_codes(dag)]


def _stage_codes(dag: Dag) -> np.ndarray:
    """stage · n_optypes + optype of every op: one code per (stage, optype)."""
    return dag.table["stage"].astype(np.int64) * len(T.ALL_OPTYPES) + dag.table["optype"].astype(np.int64)


def _typical_by(codes: np.ndarray, weight: np.ndarray, optype: np.ndarray) -> np.ndarray:
    """Per code (indexable by code; NaN where absent): the mean or median of ``weight`` over its ops.

    A code's statistic is the mean if its ops' optype is a compute optype, else
    the median (SPEC §5.3); every op of one code has the same optype.
    """
    order = np.argsort(codes, kind="stable")
    present, first = np.unique(codes[order], return_index=True)
    is_compute = np.isin(optype[order][first], [T.OPTYPE_CODE[name] for name in T.COMPUTE_OPTYPES])
    values = np.full(int(present.max()) + 1 if len(present) else 0, np.nan)
    # one slice per code (a few dozen at most), never per op
    for code, compute, group in zip(present, is_compute, np.split(weight[order], first[1:])):
        values[code] = np.mean(group) if compute else np.median(group)
    return values
