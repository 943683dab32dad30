"""Longest-path evaluation of a compiled DAG for batches of weight scenarios.

SPEC §4: an op starts at max(end of its predecessors) + launch delay; a local op
ends at start + duration; a group member ends at max(start of its group) +
transfer time. With barrier nodes this is a longest path, which
:class:`CompiledDag` evaluates level by level: every node of a topological
level is computed at once, for every scenario of the batch at once. There is
no Python loop over ops; the loop is over the (few hundred) levels.

Weights are arrays of shape (n_ops, n_scenarios): ``weight`` is an op's
duration (local op) or transfer time (group member); ``delay`` its launch delay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ScheduleError

#: Scenarios evaluated together at most; bounds memory on very large DAGs.
DEFAULT_MAX_BATCH_BYTES = 1 << 30


@dataclass
class Simulation:
    """Simulated start and end of every op instance, per scenario.

    ``start`` and ``end`` have shape (n_ops, n_scenarios), times relative to the
    step start. ``step_time`` (n_steps, n_scenarios) is the latest end of an
    optimizer op per step (SPEC §4); ``span`` the latest end minus earliest start.
    """

    start: np.ndarray
    end: np.ndarray
    step_time: np.ndarray
    span: np.ndarray


class CompiledDag:
    """A DAG levelled once, ready to evaluate many weight scenarios.

    Build it with :meth:`graphwia.dag.Dag.compile`.
    """

    def __init__(self, n_ops: int, n_nodes: int, n_steps: int, src, via, level_bounds, level_targets,
                 level_starts, provider, optimizer_ops, optimizer_starts, levels):
        self.n_ops = n_ops
        self.n_nodes = n_nodes
        self.n_steps = n_steps
        self._src = src  # edge sources, sorted by (level of dst, dst)
        self._via = via  # op whose weight the edge adds; n_ops = the zero row
        self._level_bounds = level_bounds  # per level: (first edge, end edge)
        self._level_targets = level_targets  # per level: distinct dst nodes
        self._level_starts = level_starts  # per level: offsets of each dst's edges
        self.provider = provider
        self._optimizer_ops = optimizer_ops
        self._optimizer_starts = optimizer_starts
        self.levels = levels  # topological level of every node

    @property
    def n_levels(self) -> int:
        return len(self._level_bounds)

    @classmethod
    def from_dag(cls, dag) -> "CompiledDag":
        edges = dag.edges
        levels = topological_levels(dag.n_nodes, edges.src, edges.dst, dag)
        order = np.lexsort((edges.dst, levels[edges.dst]))
        src, dst = edges.src[order], edges.dst[order]
        via = np.where(edges.via[order] < 0, dag.n_ops, edges.via[order])
        dst_level = levels[dst]
        bounds, targets, starts = [], [], []
        level_edges = np.flatnonzero(np.diff(dst_level, prepend=-1, append=-1))
        for first, end in zip(level_edges[:-1], level_edges[1:]):
            block = dst[first:end]
            new_target = np.flatnonzero(np.diff(block, prepend=-1))
            bounds.append((int(first), int(end)))
            targets.append(block[new_target])
            starts.append(new_target)
        optimizer = _optimizer_ops(dag)
        return cls(dag.n_ops, dag.n_nodes, len(dag.steps), src, via, bounds, targets, starts, dag.provider,
                   optimizer, _segment_starts(optimizer, dag.ops_per_step, len(dag.steps)), levels)

    def evaluate(self, weight: np.ndarray, delay: np.ndarray, max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES) -> Simulation:
        """Simulate scenarios: ``weight`` and ``delay`` of shape (n_ops,) or (n_ops, n_scenarios)."""
        weight, delay = _as_batch(weight, self.n_ops), _as_batch(delay, self.n_ops)
        if weight.shape != delay.shape:
            raise ValueError(f"weight {weight.shape} and delay {delay.shape} must have the same shape")
        n_scen = weight.shape[1]
        per_scenario = 8 * (self.n_nodes + 3 * self.n_ops + 2 * len(self._src))
        chunk = max(1, min(n_scen, max_batch_bytes // max(per_scenario, 1)))
        parts = [self._evaluate_batch(weight[:, i:i + chunk], delay[:, i:i + chunk]) for i in range(0, n_scen, chunk)]
        if len(parts) == 1:
            return parts[0]
        return Simulation(*(np.concatenate([getattr(p, f) for p in parts], axis=1)
                            for f in ("start", "end", "step_time", "span")))

    def _evaluate_batch(self, weight: np.ndarray, delay: np.ndarray) -> Simulation:
        n_scen = weight.shape[1]
        weight_ext = np.vstack([weight, np.zeros((1, n_scen))])  # row n_ops: edges that add nothing
        time = np.zeros((self.n_nodes, n_scen))
        for (first, end), targets, starts in zip(self._level_bounds, self._level_targets, self._level_starts):
            arrival = time[self._src[first:end]]
            arrival += weight_ext[self._via[first:end]]
            latest = np.maximum.reduceat(arrival, starts, axis=0)
            is_op = targets < self.n_ops
            latest[is_op] += delay[targets[is_op]]
            time[targets] = latest
        start = time[: self.n_ops]
        end = time[self.provider] + weight
        return Simulation(start=start, end=end, step_time=self.step_times(end), span=self.spans(start, end))

    def step_times(self, end: np.ndarray) -> np.ndarray:
        """Latest optimizer end per step, shape (n_steps, n_scenarios)."""
        if len(self._optimizer_ops) == 0:
            return self.spans(np.zeros_like(end), end)
        return np.maximum.reduceat(end[self._optimizer_ops], self._optimizer_starts, axis=0)

    def spans(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Latest end minus earliest start per step (op ids are step-major)."""
        n_scen = end.shape[1]
        per_step = self.n_ops // self.n_steps
        shape = (self.n_steps, per_step, n_scen)
        return end.reshape(shape).max(axis=1) - start.reshape(shape).min(axis=1)


def topological_levels(n_nodes: int, src: np.ndarray, dst: np.ndarray, dag=None) -> np.ndarray:
    """Longest-path level of every node (sources at 0), by vectorised Kahn peeling.

    Raises :class:`~graphwia.errors.ScheduleError` naming the ops on a cycle.
    """
    order = np.argsort(src, kind="stable")
    out_dst = dst[order]
    out_start = np.searchsorted(src[order], np.arange(n_nodes + 1))
    indegree = np.bincount(dst, minlength=n_nodes)
    level = np.full(n_nodes, -1, dtype=np.int64)
    frontier = np.flatnonzero(indegree == 0)
    current = 0
    while len(frontier):
        level[frontier] = current
        counts = out_start[frontier + 1] - out_start[frontier]
        edge_ids = np.repeat(out_start[frontier] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        touched = out_dst[edge_ids]
        indegree -= np.bincount(touched, minlength=n_nodes)
        touched = np.unique(touched)
        frontier = touched[indegree[touched] == 0]
        current += 1
    if (level < 0).any():
        raise ScheduleError(_describe_cycle(np.flatnonzero(level < 0), src, dst, dag))
    return level


def _describe_cycle(stuck: np.ndarray, src, dst, dag) -> str:
    import networkx as nx

    keep = np.isin(src, stuck) & np.isin(dst, stuck)
    graph = nx.DiGraph()
    graph.add_edges_from(zip(src[keep].tolist(), dst[keep].tolist()))
    cycle = nx.find_cycle(graph)
    names = [_node_name(u, dag) for u, _ in cycle]
    ops = [n for n in names if n is not None]
    return "dependency cycle, the trace does not fit the model: " + " -> ".join(ops[:12]) + \
        (" -> …" if len(ops) > 12 else "")


def _node_name(node: int, dag) -> str | None:
    if dag is None:
        return str(node)
    if node >= dag.n_ops:
        return None  # barriers and sources are implementation detail
    row = dag.ops.iloc[int(node)]
    return (f"{row['optype']} seq_id {row['seq_id']} (dp_rank {row['dp_rank']}, stage {row['stage']}, "
            f"step {row['step']})")


def _optimizer_ops(dag) -> np.ndarray:
    return np.flatnonzero(dag.ops["optype"].to_numpy() == "optimizer")


def _segment_starts(sorted_ops: np.ndarray, per_step: int, n_steps: int) -> np.ndarray:
    """Offsets of each step's block in a sorted array of op ids (every step must have one)."""
    return np.searchsorted(sorted_ops // per_step, np.arange(n_steps))


def _as_batch(values: np.ndarray, n_ops: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.shape[0] != n_ops:
        raise ValueError(f"expected {n_ops} rows of weights, got {values.shape[0]}")
    return values
