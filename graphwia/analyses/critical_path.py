"""Critical paths: the chain of op instances that sets each step's time.

In a simulation (SPEC §4) an op starts at the latest *arrival* over its
incoming edges (the src node's time plus the via op's weight) plus its launch
delay, and a group's barrier time is the latest start of its members. The
critical path of a step walks back from the optimizer that ends last:

* at an op, through the incoming edge whose arrival was the latest, to the
  predecessor op that edge carries (``link`` = the edge kind);
* at a group member whose end its barrier set, to the member that started last
  (``link`` = the group kind), unless the op itself started last (ties stay);
* it stops at an op whose start only the step start bounds (no predecessor).

Every element *hands off* to the next one at its ``handoff`` time: its end, or,
for a member that arrived last at a group whose transfer is counted on the
next element, the group's sync time (its own start). ``on_path`` = handoff −
previous handoff (the first from 0) is the share of the step time an element
accounts for, so the ``on_path`` of a step's path sums to its step time.
Handoffs never decrease, except by a small negative launch delay or transfer
time that SPEC §3 keeps. Ends of consecutive elements can decrease at a group
hop: a sender that arrived last may have a longer transfer than its receiver.

The argmax predecessor of every node is found at once with the edge arrays;
only the walk along a path (a few hundred hops at most) is a Python loop.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from graphwia.engine.evaluate import CompiledDag, Simulation
from graphwia.errors import UsageError
from graphwia.model.dag import Dag
from graphwia.model.schedule import EDGE_KINDS
from graphwia.optypes import OPTIMIZER
from graphwia.trace.steps import Steps, checked_steps
from graphwia.utils.table import Table

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from graphwia.analyses.standard import Analysis
    from graphwia.analyses.whatif import ScenarioSet, WhatIfResult
    from graphwia.model.weights import TypicalFrom
    from graphwia.trace.optable import Trace

__all__ = [
    "ELEMENT_COLUMNS",
    "CriticalPaths",
    "PathShare",
    "PathSummary",
    "WorkerShare",
    "critical_path",
    "scenario_critical_path",
    "simulated_critical_path",
    "step_picker",
    "whatif_critical_path",
]

#: Columns of one path element, in output order (``step`` and ``hop`` lead in tables).
ELEMENT_COLUMNS = (
    "op",
    "optype",
    "seq_id",
    "dp_rank",
    "stage",
    "rank",
    "mb_id",
    "chunk",
    "start",
    "end",
    "weight",
    "delay",
    "handoff",
    "on_path",
    "link",
)
_ID_COLUMNS = ("seq_id", "dp_rank", "stage", "rank", "mb_id", "chunk")
#: Edge kinds of group membership: a hop through a barrier hands off at the group's sync time.
_GROUP_CODES = [EDGE_KINDS.index(k) for k in ("p2p-pair", "dp-collective", "embedding", "clip")]


@dataclass(frozen=True)
class PathShare:
    """Time a group of path elements (an op type, a stage) accounts for on the critical paths.

    ``time`` is seconds per step (the mean over the walked steps), ``share``
    the fraction of all path time (NaN when the paths take no time).
    """

    time: float
    share: float


@dataclass(frozen=True)
class WorkerShare(PathShare):
    """A worker's :class:`PathShare`, and on how many walked steps' paths it is.

    ``steps_on_path`` counts the steps whose path holds at least one of the
    worker's ops; ``step_fraction`` is that count over the walked steps.
    """

    steps_on_path: int
    step_fraction: float


@dataclass(frozen=True)
class PathSummary:
    """Time on the critical paths per op type, stage and worker (:meth:`CriticalPaths.summary`).

    ``steps`` is the number of walked steps, ``mean_step_time`` their mean
    simulated step time (seconds) and ``mean_path_length`` the mean number of
    elements per path. ``by_optype`` is keyed by op type, ``by_stage`` by
    stage and ``by_worker`` by ``(dp_rank, stage)``; each lists the keys on
    the paths, the most time first.
    """

    steps: int
    mean_step_time: float
    mean_path_length: float
    by_optype: Mapping[str, PathShare]
    by_stage: Mapping[int, PathShare]
    by_worker: Mapping[tuple[int, int], WorkerShare]


@dataclass
class CriticalPaths:
    """The critical path of each walked step of one scenario.

    ``element_table`` has one row per path element, steps in order and each
    path from its first op to the optimizer that ends the step, with columns
    ``step``, ``hop`` and :data:`ELEMENT_COLUMNS` (times in seconds relative to
    the step start; ``op`` is the node id in ``dag``; ``link`` is how the
    element hands off to the next one, empty for the last); :attr:`elements`
    is the same table as a pandas DataFrame. ``step_time`` maps each walked
    step to its simulated step time.
    """

    scenario: str
    steps: list[int]
    step_time: dict[int, float]
    element_table: Table = field(repr=False)
    dag: Dag = field(repr=False)
    start: np.ndarray = field(repr=False)  # simulated start / end / weight of every op of dag
    end: np.ndarray = field(repr=False)
    weight: np.ndarray = field(repr=False)

    @functools.cached_property
    def elements(self) -> pd.DataFrame:
        """The path elements as a pandas DataFrame (built on first use), one row per element of ``element_table``."""
        return self.element_table.to_pandas()

    def path(self, step: int) -> np.ndarray:
        """Node ids of the ops on ``step``'s path, first to last."""
        return self.element_table["op"][self.element_table["step"] == step]

    def summary(self) -> PathSummary:
        """Time on the critical path per op type, stage and worker, and how often each worker is on it.

        ``time`` is seconds per step (mean over the walked steps), ``share`` the fraction of all path
        time; a worker (key ``(dp_rank, stage)``) also gets ``steps_on_path`` and ``step_fraction``
        (see :class:`PathSummary`; :func:`graphwia.outputs.critical_path.summary_dict` is its JSON form).
        """
        frame = self.elements
        n_steps = len(self.steps)
        on_path = frame["on_path"]
        total = float(on_path.sum())
        workers = [frame["dp_rank"], frame["stage"]]
        on_steps = {(int(d), int(g)): int(n) for (d, g), n in frame.groupby(workers)["step"].nunique().items()}
        by_worker = {}
        for (dp_rank, stage), entry in _time_by(on_path, workers, n_steps, total):
            worker = (int(dp_rank), int(stage))
            by_worker[worker] = WorkerShare(
                entry.time, entry.share, steps_on_path=on_steps[worker], step_fraction=on_steps[worker] / n_steps
            )
        return PathSummary(
            steps=n_steps,
            mean_step_time=float(np.mean(list(self.step_time.values()))),
            mean_path_length=len(frame) / n_steps,
            by_optype={str(k): v for k, v in _time_by(on_path, [frame["optype"]], n_steps, total)},
            by_stage={int(k): v for k, v in _time_by(on_path, [frame["stage"]], n_steps, total)},
            by_worker=by_worker,
        )


def critical_path(
    dag: Dag,
    compiled: CompiledDag,
    weight: np.ndarray,
    delay: np.ndarray,
    *,
    steps: Steps | None = None,
    scenario: str = "custom",
) -> CriticalPaths:
    """Simulate one scenario (``weight``, ``delay`` of shape (n_ops,)) and walk its critical paths.

    ``steps`` limits the walk to some steps of ``dag`` (default: all).
    """
    weight, delay = _one_scenario(weight, dag, "weight"), _one_scenario(delay, dag, "delay")
    return simulated_critical_path(dag, compiled.evaluate(weight, delay), weight, steps=steps, scenario=scenario)


def simulated_critical_path(
    dag: Dag,
    simulation: Simulation,
    weight: np.ndarray,
    *,
    column: int = 0,
    steps: Steps | None = None,
    scenario: str = "custom",
) -> CriticalPaths:
    """Critical paths of scenario ``column`` of an existing simulation run with ``weight``.

    ``weight`` is that scenario's weight array (n_ops,) (launch delays are not
    needed: they do not change which arrival was the latest). The simulation
    must have kept every op's times (``times=True``); a UsageError says so otherwise.
    """
    weight = _one_scenario(weight, dag, "weight")
    if simulation.start is None or simulation.end is None:
        raise UsageError("critical paths are walked on every op's times: simulate with times=True")
    start = simulation.start[:, column]
    end = simulation.end[:, column]
    walked = _walked_steps(dag, steps)
    node_time = _node_times(dag, start)
    pred_src, pred_via, pred_kind, latest = _latest_arrivals(dag, node_time, weight)
    last_ops = _last_optimizers(dag, end, walked)
    rows = [_walk(int(op), dag, node_time, pred_src, pred_via, pred_kind) for op in last_ops]
    element_table = _element_table(dag, walked, rows, start, end, weight, latest)
    step_pos = np.searchsorted(dag.steps, walked)
    step_time = {int(s): float(simulation.step_time[p, column]) for s, p in zip(walked, step_pos)}
    return CriticalPaths(
        scenario=scenario,
        steps=[int(s) for s in walked],
        step_time=step_time,
        element_table=element_table,
        dag=dag,
        start=start,
        end=end,
        weight=weight,
    )


def whatif_critical_path(result: WhatIfResult, scenario: str, *, steps: Steps | None = None) -> CriticalPaths:
    """Critical paths of a what-if run's baseline (by its name) or of one of its scenarios.

    The run must have kept every op's times (``run_whatif(..., times=True)``).
    """
    names = [result.baseline] + list(result.names)
    if scenario not in names:
        raise UsageError(
            f"scenario {scenario!r} is not in {result.scenarios.source}; choose one of: {', '.join(names)}"
        )
    if result.simulation.start is None:
        raise UsageError("critical paths are walked on every op's times: run the scenarios with times=True")
    column = names.index(scenario)
    return simulated_critical_path(
        result.dag, result.simulation, result.column_weight(column), column=column, steps=steps, scenario=scenario
    )


def scenario_critical_path(
    source: Trace | Analysis,
    scenario: str = "base",
    *,
    scenarios: ScenarioSet | None = None,
    steps: Steps | None = None,
    typical_from: TypicalFrom | None = None,
) -> CriticalPaths:
    """Critical paths of a named scenario of a trace or an analysis.

    ``scenario`` is ``base``, ``nodelay`` or ``ideal`` (weights as in
    :mod:`graphwia.analyses.whatif`), or the name of a scenario in
    ``scenarios``. ``steps`` limits a trace to those steps, whose ops the
    typical weights come from unless ``typical_from="all"`` (as in
    :func:`graphwia.analyze`); the paths of an analysis are walked on
    ``steps`` of those it analysed, with its own typical weights.
    """
    from graphwia.analyses.whatif import choose_scenario
    from graphwia.trace.optable import Trace

    is_trace = isinstance(source, Trace)  # a trace simulates only the chosen steps
    chosen = choose_scenario(
        source, scenario, scenarios=scenarios, steps=steps if is_trace else None, typical_from=typical_from
    )
    return critical_path(
        chosen.dag, chosen.compiled, chosen.weight, chosen.delay, steps=None if is_trace else steps, scenario=scenario
    )


# -- the vectorised part --------------------------------------------------------------


def _node_times(dag: Dag, start: np.ndarray) -> np.ndarray:
    """Time of every node: ops their start, barriers the latest member start, step sources 0."""
    time = np.zeros(dag.n_nodes)
    time[: dag.n_ops] = start
    barrier = dag.table["barrier"]
    members = np.flatnonzero(barrier >= 0)
    time[dag.n_ops : dag.n_ops + dag.n_barriers] = -np.inf
    np.maximum.at(time, barrier[members], start[members])
    return time


def _latest_arrivals(dag: Dag, node_time: np.ndarray, weight: np.ndarray):
    """Per node, the src, via and kind of the incoming edge whose arrival was the latest, and that arrival.

    Arrivals are recomputed exactly as the evaluator adds them, so the argmax
    is the edge that set the node's time (an op's start − its latest arrival is
    its launch delay). Ties go to the lowest edge index; NaN arrival: no edge.
    """
    edges = dag.edges
    arrival = node_time[edges.src] + np.append(weight, 0.0)[edges.via]
    order = np.lexsort((-arrival, edges.dst))
    first = order[np.flatnonzero(np.diff(edges.dst[order], prepend=-1))]
    pred_src = np.full(dag.n_nodes, -1, dtype=np.int64)
    pred_via = np.full(dag.n_nodes, -1, dtype=np.int64)
    pred_kind = np.full(dag.n_nodes, -1, dtype=np.int64)
    pred_src[edges.dst[first]] = edges.src[first]
    pred_via[edges.dst[first]] = edges.via[first]
    pred_kind[edges.dst[first]] = edges.kind[first]
    latest = np.full(dag.n_nodes, np.nan)
    latest[edges.dst[first]] = arrival[first]
    return pred_src, pred_via, pred_kind, latest


def _last_optimizers(dag: Dag, end: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per walked step, the op whose end is the step time (latest optimizer, or latest op)."""
    per_step = dag.ops_per_step
    step_pos = np.searchsorted(dag.steps, steps)
    optimizer = [code for code, name in enumerate(dag.table.categories["optype"]) if name == OPTIMIZER]
    is_optimizer = np.isin(dag.table["optype"], optimizer).reshape(-1, per_step)[step_pos]
    ends = end.reshape(-1, per_step)[step_pos]
    if is_optimizer.any(axis=1).all():
        ends = np.where(is_optimizer, ends, -np.inf)
    return step_pos * per_step + np.argmax(ends, axis=1)


def _walk(op: int, dag: Dag, node_time, pred_src, pred_via, pred_kind) -> list[tuple[int, int]]:
    """(op, link kind code) pairs of one path, first op first; the last op's link is −1."""
    barrier = dag.table["barrier"]
    hops = [(op, -1)]
    while True:
        group = barrier[op]
        if group >= 0 and node_time[op] < node_time[group]:  # another member arrived last
            op = int(pred_src[group])
            hops.append((op, int(pred_kind[group])))
        if pred_via[op] < 0:  # only the step start bounds this op
            break
        hops.append((int(pred_via[op]), int(pred_kind[op])))
        op = int(pred_via[op])
    return hops[::-1]


def _element_table(
    dag: Dag, steps: np.ndarray, paths: list[list[tuple[int, int]]], start, end, weight, latest_arrival
) -> Table:
    """The element table of all walked paths (see :class:`CriticalPaths`)."""
    ops = np.array([op for path in paths for op, _ in path], dtype=np.int64)
    link = np.array([kind for path in paths for _, kind in path], dtype=np.int64)
    lengths = [len(path) for path in paths]
    hop = np.concatenate([np.arange(n) for n in lengths]) if lengths else np.zeros(0, np.int64)
    through_group = np.isin(link, _GROUP_CODES)
    handoff = np.where(through_group, start[ops], end[ops])
    previous = np.concatenate([[0.0], handoff[:-1]])
    previous[hop == 0] = 0.0
    columns = {"step": np.repeat(steps, lengths), "hop": hop, "op": ops, "optype": _optype_names(dag, ops)}
    columns.update({column: dag.table[column][ops] for column in _ID_COLUMNS})
    columns.update(
        start=start[ops],
        end=end[ops],
        weight=weight[ops],
        delay=start[ops] - latest_arrival[ops],
        handoff=handoff,
        on_path=handoff - previous,
        link=np.array([""] + list(EDGE_KINDS), dtype=object)[link + 1],
    )
    return Table(columns)


def _optype_names(dag: Dag, ops: np.ndarray) -> np.ndarray:
    """The op type of each op of ``ops`` by name (an object array of str)."""
    names = np.array(dag.table.categories["optype"], dtype=object)
    return names[dag.table["optype"][ops]]


# -- helpers --------------------------------------------------------------------------


def _walked_steps(dag: Dag, steps: Steps | None) -> np.ndarray:
    return dag.steps if steps is None else checked_steps(steps, dag.steps, "critical path", where="analysed")


def _one_scenario(values, dag: Dag, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.shape != (dag.n_ops,):
        raise UsageError(f"critical path: {name} must have shape ({dag.n_ops},) (one scenario), got {values.shape}")
    return values


def step_picker(dag: Dag, steps: list[int]):
    """A function taking a (n_ops,) array to the walked steps' rows, or None when all are walked."""
    if len(steps) == len(dag.steps):
        return None
    rows = np.searchsorted(dag.steps, steps)
    return lambda values: values.reshape(len(dag.steps), dag.ops_per_step)[rows].ravel()


def _time_by(on_path: pd.Series, keys: Sequence[pd.Series], n_steps: int, total: float) -> list[tuple[Any, PathShare]]:
    """Per key (one column, or a tuple of several): mean seconds per step on the path and share of all
    path time, largest first.

    The sort is stable: keys of equal time (several op types are on the path for 0 s) stay in key
    order, so the summary is the same on every machine and pandas version."""
    by = keys[0].to_numpy() if len(keys) == 1 else [key.to_numpy() for key in keys]
    sums = on_path.groupby(by).sum().sort_values(ascending=False, kind="stable")
    return [
        (k, PathShare(time=float(v) / n_steps, share=float(v) / total if total else float("nan")))
        for k, v in sums.items()
    ]
