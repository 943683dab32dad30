"""The explicit DAG of op instances (SPEC §2), array-backed.

:func:`build_dag` replicates a :class:`~graphwia.schedule.Schedule` over every
analysed step and DP rank. Node ids are laid out so that a node's id says what
it is, and every step is one contiguous block of op ids:

* ``[0, n_ops)``: op instances, id = step_pos·P + stage_offset + dp_rank·n_stage + position;
* ``[n_ops, n_ops + n_barriers)``: one barrier node per synchronising group instance;
* ``[n_ops + n_barriers, n_nodes)``: one source node per step (time 0).

Edges carry the time of their ``src`` node plus the weight of their ``via`` op
(−1: nothing) to ``dst``. An intra-worker edge u → v has ``via = u`` and
``src`` = u itself, or u's barrier when u is a group member (a member ends at
its barrier time plus its transfer time). Membership edges go member → barrier;
``step-start`` edges go from the step's source to ops without predecessors.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from graphwia.errors import TraceError
from graphwia.model.schedule import EDGE_KINDS, KIND_CODE, Schedule, infer_schedule
from graphwia.optypes import ALL_OPTYPES
from graphwia.trace.optable import Trace, describe_op
from graphwia.trace.steps import Steps, checked_steps
from graphwia.utils.table import Table

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

    from graphwia.engine.evaluate import CompiledDag
    from graphwia.model.graph import Workers

__all__ = ["Dag", "Edges", "build_dag"]


@dataclass(frozen=True)
class Edges:
    """Edge table as parallel arrays (see module docstring)."""

    src: np.ndarray
    dst: np.ndarray
    via: np.ndarray
    kind: np.ndarray  # codes into schedule.EDGE_KINDS

    def __len__(self) -> int:
        return len(self.src)

    def to_pandas(self):
        """Edges as a pandas DataFrame with a categorical ``kind`` column (as :meth:`Table.to_pandas
        <graphwia.utils.table.Table.to_pandas>` converts a table)."""
        return Table(
            {"src": self.src, "dst": self.dst, "via": self.via, "kind": self.kind}, {"kind": EDGE_KINDS}
        ).to_pandas()


@dataclass
class Dag:
    """Explicit dependency DAG of a trace's op instances over the analysed steps.

    Attributes
    ----------
    table:
        Node table of op instances in node-id order: the trace columns, times
        relative to each step's earliest start (``start``, ``end``), the
        template ``position``, the p2p ``noop`` class (0, 1 or 2), ``chunk``
        (global model chunk, also for matched p2p ops) and ``barrier`` (the op's
        barrier node, −1 for a local op). :attr:`ops` is the same as a DataFrame.
    barrier_table:
        One row per group instance: ``kind`` (code into EDGE_KINDS), ``step``,
        ``size``. :attr:`barriers` is the same as a DataFrame.
    edges:
        :class:`Edges`.
    steps:
        Analysed step numbers, sorted; step block ``i`` holds ``steps[i]``.
    """

    table: Table
    barrier_table: Table
    edges: Edges
    steps: np.ndarray
    schedule: Schedule
    trace: Trace

    @functools.cached_property
    def ops(self):
        """The node table of op instances as a pandas DataFrame (``optype`` categorical)."""
        return self.table.to_pandas()

    @functools.cached_property
    def barriers(self):
        """The barrier table as a pandas DataFrame (``kind`` categorical)."""
        return self.barrier_table.to_pandas()

    @property
    def n_ops(self) -> int:
        return len(self.table)

    @property
    def n_barriers(self) -> int:
        return len(self.barrier_table)

    @property
    def n_nodes(self) -> int:
        return self.n_ops + self.n_barriers + len(self.steps)

    @property
    def ops_per_step(self) -> int:
        return self.n_ops // len(self.steps)

    @property
    def meta(self):
        return self.trace.meta

    @property
    def provider(self) -> np.ndarray:
        """Node whose time an op's end is measured from: itself, or its barrier."""
        return _provider(self.table["barrier"])

    def compile(self) -> CompiledDag:
        """Topologically level the DAG once for fast batched evaluation."""
        from graphwia.engine.evaluate import CompiledDag

        return CompiledDag.from_dag(self)

    def select_steps(self, steps: Iterable[int]) -> Dag:
        """The same DAG restricted to some of its steps (same schedule)."""
        return build_dag(self.trace, steps=steps, schedule=self.schedule)

    def to_networkx(self, *, steps: Iterable[int] | int | None = None, workers: Workers | None = None) -> nx.DiGraph:
        """A networkx DiGraph of (part of) this DAG: :func:`graphwia.model.graph.dag_to_networkx`.

        ``workers`` as text (``"0:3,1:*"``: dp_rank:stage, ``*`` for any) or
        (dp_rank, stage) pairs with None matching any. :mod:`graphwia.model.graph`
        imports nothing of this module at run time, so this view adds no import cycle.
        """
        from graphwia.model.graph import dag_to_networkx

        return dag_to_networkx(self, steps=steps, workers=workers)


def build_dag(trace: Trace, *, steps: Steps | None = None, schedule: Schedule | None = None) -> Dag:
    """Build the explicit DAG of ``trace`` over ``steps`` (default: every step).

    The schedule is inferred from the whole trace (SPEC §2) unless given, so a
    step's sub-graph does not depend on which other steps are analysed.
    Raises :class:`~graphwia.errors.UsageError` if ``steps`` selects a step the
    trace lacks, and :class:`~graphwia.errors.TraceError` when a worker or step
    lacks an op of the schedule or has one the schedule does not know.
    """
    schedule = schedule or infer_schedule(trace)
    selected = _select_steps(trace, steps)
    layout = _Layout(schedule, trace.meta.dp_size, len(selected))
    ops = trace.table
    if len(selected) != len(trace.steps):
        ops = ops.take(np.isin(ops["step"], selected))
    node_ops = _place_ops(ops, selected, layout, schedule, trace.source)
    members_op, members_barrier, barriers = _replicate_groups(schedule, layout, selected)
    barrier_of = np.full(layout.n_ops, -1, dtype=np.int64)
    barrier_of[members_op] = layout.n_ops + members_barrier
    node_ops = node_ops.with_columns({"barrier": barrier_of})
    edges = _edges(schedule, layout, barrier_of, members_op, members_barrier, barriers)
    return Dag(table=node_ops, barrier_table=barriers, edges=edges, steps=selected, schedule=schedule, trace=trace)


def _select_steps(trace: Trace, steps: Steps | None) -> np.ndarray:
    return trace.steps if steps is None else checked_steps(steps, trace.steps, trace.source)


class _Layout:
    """Arithmetic of node ids: where each (step, stage, dp_rank, position) lives."""

    def __init__(self, schedule: Schedule, dp: int, n_steps: int):
        self.dp = dp
        self.n_steps = n_steps
        self.sizes = np.array([tpl.size for tpl in schedule.stages], dtype=np.int64)
        self.stage_offset = np.concatenate([[0], np.cumsum(self.sizes * dp)[:-1]])
        self.per_step = int(self.sizes.sum() * dp)
        self.n_ops = self.per_step * n_steps

    def op_id(self, step_pos, stage, dp_rank, position):
        return step_pos * self.per_step + self.stage_offset[stage] + dp_rank * self.sizes[stage] + position

    def worker_bases(self, stage: int) -> np.ndarray:
        """Id of position 0 of ``stage`` for every (step, dp_rank), step-major."""
        step_pos = np.repeat(np.arange(self.n_steps), self.dp)
        dp_rank = np.tile(np.arange(self.dp), self.n_steps)
        return self.op_id(step_pos, stage, dp_rank, 0)


def _place_ops(ops: Table, steps: np.ndarray, layout: _Layout, schedule: Schedule, source: str) -> Table:
    """Order the trace rows by node id, checking every op of the schedule exists once."""
    lookup = _ScheduleLookup(schedule)
    position = lookup.positions(ops)
    unknown = position < 0
    if unknown.any():
        raise TraceError(
            f"{source}: {describe_op(ops, int(np.argmax(unknown)))} "
            f"is not run by the sample worker (dp_rank 0) of that stage"
        )
    step_pos = np.searchsorted(steps, ops["step"])
    ids = layout.op_id(step_pos, ops["stage"].astype(np.int64), ops["dp_rank"].astype(np.int64), position)
    counts = np.bincount(ids, minlength=layout.n_ops)
    if (counts != 1).any():
        _raise_missing(counts, layout, steps, schedule, source)
    order = np.empty(layout.n_ops, dtype=np.int64)
    order[ids] = np.arange(len(ids))
    node_ops = ops.take(order)
    node_position = position[order]
    stage = node_ops["stage"]
    start, end = _relative_times(node_ops, layout)
    return node_ops.with_columns(
        {
            "position": node_position.astype(np.int32),
            "noop": lookup.noop[stage, node_position],
            "chunk": lookup.chunk[stage, node_position],
            "start": start,
            "end": end,
        }
    )


class _ScheduleLookup:
    """Vectorised (stage, optype, seq_id) → template position, and per-position attributes."""

    def __init__(self, schedule: Schedule):
        stages = schedule.stages
        self.max_seq = max(int(tpl.ops["seq_id"].max()) for tpl in stages) + 1
        self.table = np.full((len(stages), len(ALL_OPTYPES), self.max_seq), -1, dtype=np.int64)
        width = max(tpl.size for tpl in stages)
        self.noop = np.zeros((len(stages), width), dtype=np.int8)
        self.chunk = np.full((len(stages), width), -1, dtype=np.int32)
        for stage, tpl in enumerate(stages):
            self.table[stage, tpl.ops["optype"], tpl.ops["seq_id"]] = np.arange(tpl.size)
            self.noop[stage, : tpl.size] = tpl.ops["noop"]
            self.chunk[stage, : tpl.size] = tpl.ops["gmc"]

    def positions(self, ops: Table) -> np.ndarray:
        """Template position of every row, −1 where the schedule has no such op."""
        stage = ops["stage"].astype(np.int64)
        codes = ops["optype"].astype(np.int64)
        seq = ops["seq_id"].astype(np.int64)
        inside = (seq >= 0) & (seq < self.max_seq)
        position = np.full(len(ops), -1, dtype=np.int64)
        position[inside] = self.table[stage[inside], codes[inside], seq[inside]]
        return position


def _raise_missing(counts, layout, steps, schedule: Schedule, source) -> None:
    missing = np.flatnonzero(counts == 0)
    op_id = int(missing[0])
    step_pos, rest = divmod(op_id, layout.per_step)
    stage = int(np.searchsorted(layout.stage_offset, rest, side="right") - 1)
    dp_rank, position = divmod(rest - int(layout.stage_offset[stage]), int(layout.sizes[stage]))
    named = schedule.stages[stage].ops
    raise TraceError(
        f"{source}: {named.label('optype', position)} seq_id {named['seq_id'][position]} is missing on worker "
        f"(dp_rank {dp_rank}, stage {stage}) "
        f"in step {steps[step_pos]} ({len(missing)} op instance(s) missing in all)"
    )


def _relative_times(node_ops: Table, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Start and end relative to each step's earliest start (SPEC §4: steps start at 0)."""
    start = node_ops["start_ts"].reshape(layout.n_steps, layout.per_step)
    start = (start - start.min(axis=1, keepdims=True)).ravel()
    return start, start + node_ops["duration"]


def _replicate_groups(schedule: Schedule, layout: _Layout, steps: np.ndarray):
    """Member ops and barrier index of every group instance, plus the barrier table."""
    per_worker = schedule.groups.per_worker
    across = schedule.groups.across_dp
    n_pw = int(per_worker["group"].max()) + 1 if len(per_worker) else 0
    n_ad = int(across["group"].max()) + 1 if len(across) else 0
    # Groups within one worker pair: replicate over (step, dp_rank).
    step_pos = np.repeat(np.arange(layout.n_steps), layout.dp)[:, None]
    dp_rank = np.tile(np.arange(layout.dp), layout.n_steps)[:, None]
    pw_op = layout.op_id(step_pos, per_worker["stage"][None, :], dp_rank, per_worker["pos"][None, :])
    pw_barrier = (step_pos * layout.dp + dp_rank) * n_pw + per_worker["group"][None, :]
    # Groups across DP ranks: replicate members over dp_rank, groups over steps.
    a_step = np.arange(layout.n_steps)[:, None, None]
    a_dp = np.arange(layout.dp)[None, :, None]
    ad_op = layout.op_id(a_step, across["stage"][None, None, :], a_dp, across["pos"][None, None, :])
    ad_barrier = layout.n_steps * layout.dp * n_pw + a_step * n_ad + across["group"][None, None, :]
    ad_barrier = np.broadcast_to(ad_barrier, ad_op.shape)
    members_op = np.concatenate([pw_op.ravel(), ad_op.ravel()]).astype(np.int64)
    members_barrier = np.concatenate([pw_barrier.ravel(), ad_barrier.ravel()]).astype(np.int64)

    pw_kind = _group_kinds(per_worker)
    ad_kind = _group_kinds(across)
    kinds = np.concatenate([np.tile(pw_kind, layout.n_steps * layout.dp), np.tile(ad_kind, layout.n_steps)])
    barrier_step = np.concatenate([np.repeat(steps, layout.dp * n_pw), np.repeat(steps, n_ad)])
    barriers = Table(
        {
            "kind": kinds.astype(np.int8),
            "step": barrier_step,
            "size": np.bincount(members_barrier, minlength=len(kinds)),
        },
        {"kind": EDGE_KINDS},
    )
    return members_op, members_barrier, barriers


def _group_kinds(members: Table) -> np.ndarray:
    """Kind of each group of a member table (rows are ordered by group)."""
    _, first = np.unique(members["group"], return_index=True)
    return members["kind"][first]


def _edges(
    schedule: Schedule, layout: _Layout, barrier_of: np.ndarray, members_op, members_barrier, barriers: Table
) -> Edges:
    """All edges: intra-worker (from the templates), membership, and step-start."""
    src, dst, kind = [], [], []
    has_pred = np.zeros(layout.n_ops, dtype=bool)
    for stage, tpl in enumerate(schedule.stages):
        if not len(tpl.edges):
            continue
        bases = layout.worker_bases(stage)[:, None]
        src.append((bases + tpl.edges[:, 0]).ravel())
        dst.append((bases + tpl.edges[:, 1]).ravel())
        kind.append(np.tile(tpl.edges[:, 2], len(bases)))
    intra_src = np.concatenate(src) if src else np.zeros(0, np.int64)
    intra_dst = np.concatenate(dst) if dst else np.zeros(0, np.int64)
    intra_kind = np.concatenate(kind) if kind else np.zeros(0, np.int64)
    has_pred[intra_dst] = True
    provider = _provider(barrier_of)

    orphan = np.flatnonzero(~has_pred)
    n_barriers = len(barriers)
    source = layout.n_ops + n_barriers + orphan // layout.per_step
    member_kind = barriers["kind"][members_barrier]
    return Edges(
        src=np.concatenate([provider[intra_src], members_op, source]).astype(np.int64),
        dst=np.concatenate([intra_dst, layout.n_ops + members_barrier, orphan]).astype(np.int64),
        via=np.concatenate([intra_src, np.full(len(members_op) + len(orphan), -1)]).astype(np.int64),
        kind=np.concatenate([intra_kind, member_kind, np.full(len(orphan), KIND_CODE["step-start"])]).astype(np.int8),
    )


def _provider(barrier_of: np.ndarray) -> np.ndarray:
    """Each op's end is measured from its barrier (group member) or from itself (local op)."""
    return np.where(barrier_of >= 0, barrier_of, np.arange(len(barrier_of)))
