"""Longest-path evaluation of a compiled DAG for batches of weight scenarios.

SPEC §4: an op starts at max(end of its predecessors) + launch delay; a local op
ends at start + duration; a group member ends at max(start of its group) +
transfer time. With barrier nodes this is a longest path, which
:class:`CompiledDag` evaluates for a family of scenarios
(:mod:`graphwia.engine.scenarios`) with one of two kernels giving the same
numbers: numpy, level by level (every node of a topological level at once, for
every scenario of the batch at once; the loop is over the few hundred levels,
never over ops), or the compiled kernel of :mod:`graphwia.engine.kernels`
for large families.

Weights are arrays of shape (n_ops, n_scenarios): ``weight`` is an op's
duration (local op) or transfer time (group member); ``delay`` its launch delay.
"""

from __future__ import annotations

import copy
import functools
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from graphwia.engine.scenarios import Dense, Edited, Family, Swap
from graphwia.errors import ArgumentError, ScheduleError
from graphwia.optypes import OPTIMIZER, OPTYPE_CODE
from graphwia.utils.system import physical_memory

__all__ = [
    "COMPILED_MIN_WORK",
    "COMPILING_LABEL",
    "CompiledDag",
    "DEFAULT_CHUNK_BYTES",
    "EXTREMES_ROWS",
    "KERNELS",
    "MIN_CHUNK_COLUMNS",
    "SPARSE_MIN_GROUPS",
    "Simulation",
    "StepGraph",
    "TIMES_BYTES",
    "UNCACHED_LABEL",
    "first_step",
    "topological_levels",
]

#: Target size of one chunk's node times (see CompiledDag.evaluate_family). Every byte of a
#: chunk is a page touched, and fresh pages are what a small job's analysis mostly pays for.
DEFAULT_CHUNK_BYTES = 32 << 20
#: A chunk holds at least this many (step, scenario) columns, whatever it costs in memory:
#: narrower rows make every gather pay per row (a 10^6-op job ran 1.5x slower at 20 columns).
MIN_CHUNK_COLUMNS = 128

#: Rows of op ends the numpy kernel makes at a time when only step times and spans are kept.
EXTREMES_ROWS = 256
#: Kernels CompiledDag.evaluate_family can use; "auto" picks one (see CompiledDag).
KERNELS = ("auto", "numpy", "compiled")
#: "auto" loads the compiled kernel for a family of at least this many op-instance evaluations
#: (n_ops × scenarios): below it, numba's import (~0.3 s) costs more than the numpy kernel.
COMPILED_MIN_WORK = 20_000_000
#: What CompiledDag.load_compiled_kernel tells its progress callback before compiling the kernel ...
COMPILING_LABEL = "compiling the evaluation kernel (once per install, 30-50 s)"
#: ... and where numba finds no writable directory for its disk cache (kernels.CACHING is False),
#: so that every process compiles it. Both fit an 80-column progress line.
UNCACHED_LABEL = "compiling the kernel (30-50 s; no numba cache: set NUMBA_CACHE_DIR)"
#: Bytes a simulation keeps per op instance and scenario with ``times`` (start and end, float64).
TIMES_BYTES = 16
#: A swap family whose ops fall into at least this many groups is evaluated by propagating each
#: scenario's changes only (kernels.propagate): its groups are then small parts of the job
#: (one worker of many), whose changes reach a few percent of a step (4% at dp 64). Counted over
#: the whole family, so a part of it (on a cluster) is evaluated the same way.
SPARSE_MIN_GROUPS = 64


class Simulation:
    """Simulated start and end of every op instance, per scenario.

    ``start`` and ``end`` have shape (n_ops, n_scenarios), times relative to the
    step start, or are None when only step times were asked for. ``step_time``
    (n_steps, n_scenarios) is the latest end of an optimizer op per step (SPEC
    §4); ``span`` the latest end minus earliest start. A simulation owns its
    arrays: evaluating again never changes an earlier result.
    """

    def __init__(self, start: np.ndarray | None, end: np.ndarray | None, step_time: np.ndarray, span: np.ndarray):
        self.start = start
        self.end = end
        self.step_time = step_time
        self.span = span

    @property
    def n_scenarios(self) -> int:
        return self.step_time.shape[1]

    def select(self, columns) -> Simulation:
        """The simulation of some scenarios only (a list of column indices)."""
        columns = list(columns)

        def pick(times: np.ndarray | None) -> np.ndarray | None:
            return None if times is None else times[:, columns]

        return Simulation(pick(self.start), pick(self.end), self.step_time[:, columns], self.span[:, columns])

    @classmethod
    def concatenate(cls, parts: list[Simulation]) -> Simulation:
        """Scenarios of several simulations side by side."""
        if len(parts) == 1:
            return parts[0]

        def joined(field):
            values = [getattr(p, field) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values, axis=-1)

        return cls(*(joined(f) for f in ("start", "end", "step_time", "span")))


class CompiledDag:
    """A DAG levelled once, ready to evaluate many weight scenarios.

    Every step of a DAG has the same structure, so only one step's graph is
    levelled; steps × scenarios form the batch axis of one evaluation.
    Build it with :meth:`graphwia.model.dag.Dag.compile`.

    Two kernels give bit-identical results: ``"numpy"`` (level by level, no
    start-up cost) and ``"compiled"`` (:mod:`graphwia.engine.kernels`: numba,
    all cores, several times faster per op but about 0.3 s to import).
    ``kernel="auto"`` takes the compiled one for a family of at least
    :data:`COMPILED_MIN_WORK` op-instance evaluations, or once it is loaded.
    """

    def __init__(self, dag, step_dag):
        self.dag = dag
        self.n_ops = dag.n_ops
        self.n_steps = len(dag.steps)
        self.per_step = dag.ops_per_step
        self.n_step_nodes = step_dag.n_nodes
        edges = step_dag.edges
        step_levels = topological_levels(step_dag.n_nodes, edges.src, edges.dst, dag=step_dag)
        order = np.lexsort((edges.dst, step_levels[edges.dst]))
        self._src = edges.src[order]  # edge sources, sorted by (level of dst, dst)
        self._dst = edges.dst[order]
        self._via = np.where(edges.via[order] < 0, self.per_step, edges.via[order])  # per_step: the zero row
        self._levels = []  # per level: (first edge, end edge, [_Bucket, …])
        dst_level = step_levels[self._dst]
        cuts = np.flatnonzero(np.diff(dst_level, prepend=-1, append=-1))
        for first, end in zip(cuts[:-1], cuts[1:]):
            self._levels.append((int(first), int(end), _buckets(self._dst[first:end], self.per_step)))
        self.step_provider = step_dag.provider
        self._sources = np.setdiff1d(np.arange(self.n_step_nodes), self._dst)  # nodes at time 0
        self._local = threading.local()  # the workspace of each thread; see _buffers
        self._optimizer_flags = step_dag.table["optype"][: self.per_step] == OPTYPE_CODE[OPTIMIZER]
        self._optimizer = np.flatnonzero(self._optimizer_flags)

    @property
    def n_levels(self) -> int:
        return len(self._levels)

    @functools.cached_property
    def provider(self) -> np.ndarray:
        """Node whose time each op's end is measured from (global node ids)."""
        return self.dag.provider

    @functools.cached_property
    def levels(self) -> np.ndarray:
        """Topological level of every node of the whole DAG (computed on first use)."""
        edges = self.dag.edges
        return topological_levels(self.dag.n_nodes, edges.src, edges.dst, dag=self.dag)

    def detached(self) -> CompiledDag:
        """The same evaluator without its DAG (and so without the trace): small to send to other processes.

        It evaluates as this one does; :attr:`dag`, :attr:`provider` and :attr:`levels` are gone.
        """
        twin = copy.copy(self)
        twin.__dict__.pop("provider", None)
        twin.__dict__.pop("levels", None)
        twin.dag = None
        return twin

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_local"]  # a workspace is per process and per thread
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    @classmethod
    def from_dag(cls, dag) -> CompiledDag:
        return cls(dag, dag if len(dag.steps) == 1 else first_step(dag))

    def evaluate(
        self,
        weight: np.ndarray,
        delay: np.ndarray | None,
        *,
        times: bool = True,
        kernel: str = "auto",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> Simulation:
        """Simulate scenarios: ``weight`` and ``delay`` of shape (n_ops,) or (n_ops, n_scenarios).

        ``delay`` None means no launch delays. With ``times=False`` only step
        times and spans are kept (``start``/``end`` are None): what attribution
        needs, at a fraction of the memory.
        """
        weight = _as_batch(weight, self.n_ops)
        family = Dense(weight, None if delay is None else _as_batch(delay, self.n_ops))
        return self.evaluate_family(family, times=times, kernel=kernel, chunk_bytes=chunk_bytes)

    def evaluate_family(
        self, family: Family, *, times: bool = False, kernel: str = "auto", chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> Simulation:
        """Simulate every scenario of ``family`` (:mod:`graphwia.engine.scenarios`) on every step.

        The numpy kernel makes the family's columns chunk by chunk, sized so one
        chunk's node times take about ``chunk_bytes`` but hold at least
        :data:`MIN_CHUNK_COLUMNS` columns (wider batches touch more memory,
        narrower ones pay more per level); the compiled kernel reads a
        :class:`~graphwia.engine.scenarios.Swap` family's vectors and applies an
        :class:`~graphwia.engine.scenarios.Edited` family's edits itself, never
        building their columns.

        ``times`` keeps 16 bytes per op instance and scenario: a family whose
        times could not fit in this machine's memory is refused up front (an
        :class:`~graphwia.errors.ArgumentError` on ``times``), not half-way
        through, or by the operating system's out-of-memory killer.
        """
        if times:
            _check_times_fit(self.n_ops, family.n_scenarios)
        if self.use_compiled(kernel, family.n_scenarios):
            return self._evaluate_compiled(family, times)
        per_scenario = 8 * self.n_steps * self.n_step_nodes
        widest = max(chunk_bytes // per_scenario, -(-MIN_CHUNK_COLUMNS // self.n_steps))
        chunk = max(1, min(family.n_scenarios, widest))
        parts = [
            self._evaluate_batch(family, lo, min(family.n_scenarios, lo + chunk), times)
            for lo in range(0, family.n_scenarios, chunk)
        ]
        return Simulation.concatenate(parts)

    def use_compiled(self, kernel: str, n_scenarios: int) -> bool:
        """Whether ``kernel`` (see the class docstring) means the compiled one for ``n_scenarios`` scenarios."""
        if kernel not in KERNELS:
            raise ValueError(f"kernel {kernel!r} is not one of {', '.join(KERNELS)}")
        if kernel != "auto":
            return kernel == "compiled"
        return "graphwia.engine.kernels" in sys.modules or self.n_ops * n_scenarios >= COMPILED_MIN_WORK

    @functools.cached_property
    def plan(self):
        """This DAG's step graph as the compiled kernel reads it (:class:`graphwia.engine.kernels.Plan`)."""
        from graphwia.engine.kernels import make_plan

        via = np.where(self._via == self.per_step, -1, self._via)
        return make_plan(
            self.n_step_nodes, self.per_step, self._src, self._dst, via, self.step_provider, self._optimizer
        )

    def load_compiled_kernel(self, progress: Callable[[str], None] | None = None) -> None:
        """Make the compiled kernel ready now rather than at its first use.

        Most processes find it compiled, in numba's disk cache (its first use
        then loads it in well under a second), or loaded already: then this
        does nothing. The first process after installing (or on another CPU)
        compiles it, about 30–50 s: this then calls ``progress`` with
        :data:`COMPILING_LABEL` and compiles it, so that the wait comes with a
        word rather than in silence. Where numba finds no writable directory
        for its cache, every process compiles it, and the label
        (:data:`UNCACHED_LABEL`) says how to avoid that.
        """
        from graphwia.engine import kernels

        if kernels.is_compiled():
            return
        if progress is not None:
            progress(COMPILING_LABEL if kernels.CACHING else UNCACHED_LABEL)
        kernels.compile_all(self.plan)

    def _evaluate_compiled(self, family: Family, times: bool) -> Simulation:
        from graphwia.engine import kernels

        if isinstance(family, Swap) and not times and family.n_groups >= SPARSE_MIN_GROUPS:
            step_time, span = kernels.propagate(
                self.plan,
                self.n_steps,
                family.n_scenarios,
                family.weight[:, None],
                None if family.delay is None else family.delay[:, None],
                family.chosen_weights[:, None],
                None if family.chosen_delays is None else family.chosen_delays[:, None],
                family.group,
                first_group=family.first,
            )
            return Simulation(None, None, step_time, span)
        if isinstance(family, Swap):
            result = kernels.run(
                self.plan,
                self.n_steps,
                family.n_scenarios,
                kernels.SWAP,
                family.weight[:, None],
                None if family.delay is None else family.delay[:, None],
                chosen_weight=family.chosen_weights[:, None],
                chosen_delay=None if family.chosen_delays is None else family.chosen_delays[:, None],
                group=family.group,
                first_group=family.first,
                times=times,
            )
        elif isinstance(family, Edited):
            delay = None  # the baseline's launch delays, or 0 where a column without them sets some
            if family.has_delay:
                delay = (np.zeros(self.n_ops) if family.delay is None else family.delay)[:, None]
            result = kernels.run(
                self.plan,
                self.n_steps,
                family.n_scenarios,
                kernels.EDITED,
                family.weight[:, None],
                delay,
                edits=family.kernel_edits,
                times=times,
            )
        else:
            result = kernels.run(
                self.plan,
                self.n_steps,
                family.n_scenarios,
                kernels.DENSE,
                _as_batch(family.weight, self.n_ops),
                None if family.delay is None else _as_batch(family.delay, self.n_ops),
                times=times,
            )
        step_time, span, start, end = result
        return Simulation(start, end, step_time, span)

    def _evaluate_batch(self, family: Family, lo: int, hi: int, times: bool) -> Simulation:
        """Scenarios lo … hi−1 of ``family`` on the numpy kernel."""
        n_scen = hi - lo
        time, w, d = self._step_columns(family, lo, hi)
        w[-1] = 0.0  # the row of edges that add nothing
        time[self._sources] = 0.0  # every other node is written before it is read
        for first, end, buckets in self._levels:
            arrival = time[self._src[first:end]]
            arrival += w[self._via[first:end]]
            for bucket in buckets:
                latest = arrival[bucket.edges]
                if bucket.edges.ndim == 2:  # several incoming edges: the latest arrival wins
                    latest = latest.max(axis=1)
                if d is not None and len(bucket.op_rows):
                    latest[bucket.op_rows] += d[bucket.targets[bucket.op_rows]]
                time[bucket.targets] = latest
        if not times:
            return Simulation(None, None, *self._step_extremes(time, w, n_scen))
        start = time[: self.per_step]
        end = time[self.step_provider]
        end += w[:-1]
        shape = (self.per_step, self.n_steps, n_scen)
        start, end = start.reshape(shape), end.reshape(shape)
        span = end.max(axis=0) - start.min(axis=0)
        step_time = end[self._optimizer].max(axis=0) if len(self._optimizer) else span
        return Simulation(_op_major(start), _op_major(end), step_time, span)

    def _step_columns(self, family: Family, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Node times (to fill), weights and launch delays (None: none) of scenarios lo … hi−1, step-major.

        Row = op of one step (weights: plus a last row for the edges that add
        nothing), column = (step, scenario). A swap family is written straight
        into that layout; other families' columns are built, then laid out.
        """
        n_scen = hi - lo
        shape = (self.per_step, self.n_steps, n_scen)
        if isinstance(family, Swap):
            time, w, d = self._buffers(self.n_steps * n_scen, delays=family.delay is not None)
            _swap_into(family.weight, family.chosen_weights, family.group, family.first + lo, w[:-1].reshape(shape))
            if d is not None:
                assert family.delay is not None and family.chosen_delays is not None
                _swap_into(family.delay, family.chosen_delays, family.group, family.first + lo, d.reshape(shape))
            return time, w, d
        weight, delay = family.columns(lo, hi)
        time, w, d = self._buffers(self.n_steps * n_scen, delays=delay is not None)
        _step_major_into(_as_batch(weight, self.n_ops), w[:-1].reshape(shape))
        if d is not None:
            assert delay is not None
            _step_major_into(_as_batch(delay, self.n_ops), d.reshape(shape))
        return time, w, d

    def _step_extremes(self, time: np.ndarray, w: np.ndarray, n_scen: int) -> tuple[np.ndarray, np.ndarray]:
        """(step_time, span), each (n_steps, n_scen), from the node times of a step-major batch.

        The ops' ends are made :data:`EXTREMES_ROWS` rows at a time, a block
        that stays in cache, rather than all at once: the same maxima of the
        same sums as the arrays :meth:`_evaluate_batch` keeps for ``times``.
        """
        first_start = time[: self.per_step].min(axis=0)
        last_end = np.full(time.shape[1], -np.inf)
        last_optimizer = np.full(time.shape[1], -np.inf)
        for first in range(0, self.per_step, EXTREMES_ROWS):
            rows = slice(first, min(self.per_step, first + EXTREMES_ROWS))
            end = time[self.step_provider[rows]]
            end += w[rows]
            np.maximum(last_end, end.max(axis=0), out=last_end)
            optimizer = self._optimizer_flags[rows]
            if optimizer.any():
                np.maximum(last_optimizer, end[optimizer].max(axis=0), out=last_optimizer)
        span = (last_end - first_start).reshape(self.n_steps, n_scen)
        step_time = last_optimizer.reshape(self.n_steps, n_scen) if len(self._optimizer) else span
        return step_time, span

    def _buffers(self, width: int, *, delays: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Node-time, weight and delay (``delays``; else None) arrays of ``width`` columns, reused across chunks
        and calls.

        Fresh arrays of this size cost more in page faults than the evaluation
        itself on large jobs, so one flat buffer per thread, grown to the
        largest size asked for, backs contiguous views; results are copied out
        of it.
        """
        sizes = np.array([self.n_step_nodes, self.per_step + 1, self.per_step if delays else 0]) * width
        bounds = np.cumsum(sizes)
        workspace = getattr(self._local, "workspace", None)
        if workspace is None or workspace.size < bounds[-1]:
            workspace = self._local.workspace = np.empty(bounds[-1])
        time = workspace[: bounds[0]].reshape(self.n_step_nodes, width)
        weight = workspace[bounds[0] : bounds[1]].reshape(self.per_step + 1, width)
        delay = workspace[bounds[1] : bounds[2]].reshape(self.per_step, width) if delays else None
        return time, weight, delay

    def spans(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Latest end minus earliest start per step of op-major (n_ops, n) arrays."""
        shape = (self.n_steps, self.per_step, end.shape[1])
        return end.reshape(shape).max(axis=1) - start.reshape(shape).min(axis=1)


@dataclass(frozen=True)
class StepGraph:
    """The graph of a DAG's first step, numbered as a one-step DAG would be (what CompiledDag levels).

    Ops keep their ids (the first step is the first block of ops); the step's barriers follow in
    id order, then its source. ``edges`` has ``src``, ``dst`` and ``via`` (−1: none); ``provider``
    is each op's end node; ``table`` holds the ops' ``optype``. ``n_ops``, ``trace`` and the full
    DAG's ``table`` name ops in a cycle error.
    """

    n_nodes: int
    n_ops: int
    edges: SimpleNamespace
    provider: np.ndarray
    table: object
    trace: object


def first_step(dag) -> StepGraph:
    """The first step of ``dag`` cut out of its arrays (every edge stays within one step)."""
    per_step = dag.ops_per_step
    barriers = dag.n_ops + np.flatnonzero(dag.barrier_table["step"] == dag.steps[0])
    local = np.full(dag.n_nodes, -1, dtype=np.int64)
    local[:per_step] = np.arange(per_step)
    local[barriers] = per_step + np.arange(len(barriers))
    local[dag.n_ops + dag.n_barriers] = per_step + len(barriers)  # the step's source
    edges = dag.edges
    kept = local[edges.dst] >= 0
    cut = SimpleNamespace(src=local[edges.src[kept]], dst=local[edges.dst[kept]], via=edges.via[kept])
    return StepGraph(
        n_nodes=per_step + len(barriers) + 1,
        n_ops=per_step,
        edges=cut,
        provider=local[dag.provider[:per_step]],
        table=dag.table,
        trace=dag.trace,
    )


@dataclass(frozen=True)
class _Bucket:
    """Targets of one level with similar in-degree, and where their edges are.

    ``edges``: positions of each target's incoming edges within the level, a
    vector for in-degree 1, else a (targets, degree) matrix padded by repeating
    a target's own edge (max is idempotent). ``op_rows``: which targets are ops
    (they add their launch delay; barriers do not).
    """

    targets: np.ndarray
    edges: np.ndarray
    op_rows: np.ndarray


def _buckets(block: np.ndarray, n_ops: int) -> list[_Bucket]:
    """Group the targets of one level (``block``: sorted dst of its edges) by in-degree.

    Degrees 1, 2, 3–4, 5–8, … share a bucket, so padding at most doubles the
    work, while a handful of numpy calls per level replace a per-target loop
    (numpy's reduceat pays a fixed cost per segment, which dominated here).
    """
    first_edge = np.flatnonzero(np.diff(block, prepend=-1))
    targets = block[first_edge]
    degree = np.diff(np.append(first_edge, len(block)))
    size_class = np.ceil(np.log2(degree)).astype(np.int64)
    buckets = []
    for cls in np.unique(size_class):
        rows = np.flatnonzero(size_class == cls)
        width = int(degree[rows].max())
        if width == 1:
            edges = first_edge[rows]
        else:
            offsets = np.minimum(np.arange(width)[None, :], degree[rows, None] - 1)
            edges = first_edge[rows, None] + offsets
        bucket_targets = targets[rows]
        buckets.append(_Bucket(bucket_targets, edges, np.flatnonzero(bucket_targets < n_ops)))
    return buckets


def _step_major_into(values: np.ndarray, out: np.ndarray) -> None:
    """(n_ops, n) op-major ``values`` into ``out`` (ops_per_step, n_steps, n): one row per op of a step."""
    per_step, n_steps, n = out.shape
    out[...] = values.reshape(n_steps, per_step, n).transpose(1, 0, 2)


def _swap_into(weight: np.ndarray, chosen: np.ndarray, group: np.ndarray, first: int, out: np.ndarray) -> None:
    """Columns first … of a swap family (:class:`~graphwia.engine.scenarios.Swap`) into ``out``
    (ops_per_step, n_steps, n), step-major: ``weight`` everywhere, ``chosen`` on each column's group.

    An op is in at most one group, so it differs from ``weight`` in at most one column: one copy of the
    vector per column, then one value per op of the groups.
    """
    per_step, n_steps, n = out.shape
    out[...] = weight.reshape(n_steps, per_step).T[:, :, None]
    column = group.reshape(n_steps, per_step).T - first
    op, step = np.nonzero((column >= 0) & (column < n))
    out[op, step, column[op, step]] = chosen.reshape(n_steps, per_step).T[op, step]


def _op_major(values: np.ndarray) -> np.ndarray:
    """(ops_per_step, n_steps, n) → a new (n_ops, n) array in node-id order (never a view of ``values``)."""
    per_step, n_steps, n = values.shape
    out = np.empty((n_steps * per_step, n))
    out.reshape(n_steps, per_step, n)[...] = values.transpose(1, 0, 2)
    return out


def _check_times_fit(n_ops: int, n_scenarios: int) -> None:
    """Raise an ArgumentError on ``times`` when every op's start and end in every scenario would take more than
    this machine's physical memory."""
    need = TIMES_BYTES * n_ops * n_scenarios
    memory = physical_memory()
    if memory is not None and need > memory:
        raise ArgumentError(
            "times",
            None,
            f"every op's start and end in {n_scenarios:,} scenario(s) of {n_ops:,} op instances take "
            f"{need / 1e9:,.1f} GB, more than this machine's {memory / 1e9:,.1f} GB of memory: "
            "simulate fewer scenarios or steps",
        )


def topological_levels(n_nodes: int, src: np.ndarray, dst: np.ndarray, *, dag=None) -> np.ndarray:
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
    source = getattr(getattr(dag, "trace", None), "source", None)
    shown = ops[:12] + (["…"] if len(ops) > 12 else []) + ops[:1]  # end where it started: a cycle
    return (
        (f"{source}: " if source else "") + "dependency cycle, the trace does not fit the model: " + " -> ".join(shown)
    )


def _node_name(node: int, dag) -> str | None:
    if dag is None:
        return str(node)
    if node >= dag.n_ops:
        return None  # barriers and sources are implementation detail
    ops = dag.table
    return (
        f"{ops.label('optype', node)} seq_id {ops['seq_id'][node]} (dp_rank {ops['dp_rank'][node]}, "
        f"stage {ops['stage'][node]}, step {ops['step'][node]})"
    )


def _as_batch(values: np.ndarray, n_ops: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.shape[0] != n_ops:
        raise ValueError(f"expected {n_ops} rows of weights, got {values.shape[0]}")
    return values
