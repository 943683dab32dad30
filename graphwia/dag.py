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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import numpy as np
import pandas as pd

from .errors import TraceError
from .schedule import EDGE_KINDS, KIND_CODE, Schedule, infer_schedule
from .steps import checked_steps
from .trace import Trace

if TYPE_CHECKING:  # pragma: no cover
    from .evaluate import CompiledDag


@dataclass(frozen=True)
class Edges:
    """Edge table as parallel arrays (see module docstring)."""

    src: np.ndarray
    dst: np.ndarray
    via: np.ndarray
    kind: np.ndarray  # codes into schedule.EDGE_KINDS

    def __len__(self) -> int:
        return len(self.src)

    def to_frame(self) -> pd.DataFrame:
        """Edges as a DataFrame with a categorical ``kind`` column."""
        return pd.DataFrame({
            "src": self.src, "dst": self.dst, "via": self.via,
            "kind": pd.Categorical.from_codes(self.kind, categories=list(EDGE_KINDS)),
        })


@dataclass
class Dag:
    """Explicit dependency DAG of a trace's op instances over the analysed steps.

    Attributes
    ----------
    ops:
        Node table of op instances in node-id order: the trace columns, times
        relative to each step's earliest start (``start``, ``end``), the
        template ``position``, the p2p ``noop`` class (0, 1 or 2), ``chunk``
        (global model chunk, also for matched p2p ops) and ``barrier`` (the op's
        barrier node, −1 for a local op).
    barriers:
        One row per group instance: ``kind`` (edge-kind name), ``step``, ``size``.
    edges:
        :class:`Edges`.
    steps:
        Analysed step numbers, sorted; step block ``i`` holds ``steps[i]``.
    """

    ops: pd.DataFrame
    barriers: pd.DataFrame
    edges: Edges
    steps: np.ndarray
    schedule: Schedule
    trace: Trace

    @property
    def n_ops(self) -> int:
        return len(self.ops)

    @property
    def n_barriers(self) -> int:
        return len(self.barriers)

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
        return _provider(self.ops["barrier"].to_numpy())

    def compile(self) -> "CompiledDag":
        """Topologically level the DAG once for fast batched evaluation."""
        from .evaluate import CompiledDag

        return CompiledDag.from_dag(self)

    def select_steps(self, steps: Iterable[int]) -> "Dag":
        """The same DAG restricted to some of its steps (same schedule)."""
        return build_dag(self.trace, steps=steps, schedule=self.schedule)

    def to_networkx(self, steps: Iterable[int] | None = None, workers: Iterable[tuple[int, int]] | None = None):
        """A networkx DiGraph view of (part of) the DAG; see :mod:`graphwia.export`."""
        from .export import dag_to_networkx

        return dag_to_networkx(self, steps=steps, workers=workers)


def build_dag(trace: Trace, steps: Iterable[int] | None = None, schedule: Schedule | None = None) -> Dag:
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
    ops = trace.ops
    if len(selected) != len(trace.steps):
        ops = ops[np.isin(ops["step"].to_numpy(), selected)]
    node_ops = _place_ops(ops, selected, layout, schedule, trace.source)
    members_op, members_barrier, barriers = _replicate_groups(schedule, layout, selected)
    barrier_of = np.full(layout.n_ops, -1, dtype=np.int64)
    barrier_of[members_op] = layout.n_ops + members_barrier
    node_ops["barrier"] = barrier_of
    edges = _edges(schedule, layout, barrier_of, members_op, members_barrier, barriers)
    return Dag(ops=node_ops, barriers=barriers, edges=edges, steps=selected, schedule=schedule, trace=trace)


def _select_steps(trace: Trace, steps: Iterable[int] | None) -> np.ndarray:
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


def _place_ops(ops: pd.DataFrame, steps: np.ndarray, layout: _Layout, schedule: Schedule, source: str) -> pd.DataFrame:
    """Order the trace rows by node id, checking every op of the schedule exists once."""
    lookup = _ScheduleLookup(schedule)
    position = lookup.positions(ops)
    unknown = position < 0
    if unknown.any():
        row = ops.iloc[int(np.argmax(unknown))]
        raise TraceError(
            f"{source}: {row['optype']} seq_id {row['seq_id']} on worker (dp_rank {row['dp_rank']}, stage {row['stage']}) "
            f"in step {row['step']} is not run by the sample worker (dp_rank 0) of that stage")
    step_pos = np.searchsorted(steps, ops["step"].to_numpy())
    ids = layout.op_id(step_pos, ops["stage"].to_numpy().astype(np.int64), ops["dp_rank"].to_numpy().astype(np.int64),
                       position)
    counts = np.bincount(ids, minlength=layout.n_ops)
    if (counts != 1).any():
        _raise_missing(counts, layout, steps, schedule, source)
    order = np.empty(layout.n_ops, dtype=np.int64)
    order[ids] = np.arange(len(ids))
    node_ops = ops.iloc[order].reset_index(drop=True)
    node_position = position[order]
    stage = node_ops["stage"].to_numpy()
    node_ops["position"] = node_position.astype(np.int32)
    node_ops["noop"] = lookup.noop[stage, node_position]
    node_ops["chunk"] = lookup.chunk[stage, node_position]
    _add_relative_times(node_ops, layout)
    return node_ops


class _ScheduleLookup:
    """Vectorised (stage, optype, seq_id) → template position, and per-position attributes."""

    def __init__(self, schedule: Schedule):
        from .trace import OPTYPE_DTYPE

        self.categories = OPTYPE_DTYPE.categories
        stages = schedule.stages
        self.max_seq = max(int(tpl.ops["seq_id"].max()) for tpl in stages) + 1
        self.table = np.full((len(stages), len(self.categories), self.max_seq), -1, dtype=np.int64)
        width = max(tpl.size for tpl in stages)
        self.noop = np.zeros((len(stages), width), dtype=np.int8)
        self.chunk = np.full((len(stages), width), -1, dtype=np.int32)
        for stage, tpl in enumerate(stages):
            codes = self.categories.get_indexer(tpl.ops["optype"].to_numpy())
            self.table[stage, codes, tpl.ops["seq_id"].to_numpy()] = np.arange(tpl.size)
            self.noop[stage, : tpl.size] = tpl.ops["noop"].to_numpy()
            self.chunk[stage, : tpl.size] = tpl.ops["gmc"].to_numpy()

    def positions(self, ops: pd.DataFrame) -> np.ndarray:
        """Template position of every row, −1 where the schedule has no such op."""
        stage = ops["stage"].to_numpy().astype(np.int64)
        codes = ops["optype"].cat.codes.to_numpy().astype(np.int64)
        seq = ops["seq_id"].to_numpy().astype(np.int64)
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
    named = schedule.stages[stage].ops.iloc[position]
    raise TraceError(
        f"{source}: {named['optype']} seq_id {named['seq_id']} is missing on worker (dp_rank {dp_rank}, stage {stage}) "
        f"in step {steps[step_pos]} ({len(missing)} op instance(s) missing in all)")


def _add_relative_times(node_ops: pd.DataFrame, layout: _Layout) -> None:
    """Times relative to each step's earliest start (SPEC §4: steps start at 0)."""
    start = node_ops["start_ts"].to_numpy().reshape(layout.n_steps, layout.per_step)
    step_start = start.min(axis=1, keepdims=True)
    node_ops["start"] = (start - step_start).ravel()
    node_ops["end"] = node_ops["start"].to_numpy() + node_ops["duration"].to_numpy()


def _replicate_groups(schedule: Schedule, layout: _Layout, steps: np.ndarray):
    """Member ops and barrier index of every group instance, plus the barrier table."""
    per_worker = schedule.groups.per_worker
    across = schedule.groups.across_dp
    n_pw = int(per_worker["group"].max()) + 1 if len(per_worker) else 0
    n_ad = int(across["group"].max()) + 1 if len(across) else 0
    # Groups within one worker pair: replicate over (step, dp_rank).
    step_pos = np.repeat(np.arange(layout.n_steps), layout.dp)[:, None]
    dp_rank = np.tile(np.arange(layout.dp), layout.n_steps)[:, None]
    pw_op = layout.op_id(step_pos, per_worker["stage"].to_numpy()[None, :], dp_rank, per_worker["pos"].to_numpy()[None, :])
    pw_barrier = (step_pos * layout.dp + dp_rank) * n_pw + per_worker["group"].to_numpy()[None, :]
    # Groups across DP ranks: replicate members over dp_rank, groups over steps.
    a_step = np.arange(layout.n_steps)[:, None, None]
    a_dp = np.arange(layout.dp)[None, :, None]
    ad_op = layout.op_id(a_step, across["stage"].to_numpy()[None, None, :], a_dp, across["pos"].to_numpy()[None, None, :])
    ad_barrier = layout.n_steps * layout.dp * n_pw + a_step * n_ad + across["group"].to_numpy()[None, None, :]
    ad_barrier = np.broadcast_to(ad_barrier, ad_op.shape)
    members_op = np.concatenate([pw_op.ravel(), ad_op.ravel()]).astype(np.int64)
    members_barrier = np.concatenate([pw_barrier.ravel(), ad_barrier.ravel()]).astype(np.int64)

    pw_kind = per_worker.groupby("group")["kind"].first().to_numpy() if n_pw else np.zeros(0, np.int64)
    ad_kind = across.groupby("group")["kind"].first().to_numpy() if n_ad else np.zeros(0, np.int64)
    kinds = np.concatenate([np.tile(pw_kind, layout.n_steps * layout.dp), np.tile(ad_kind, layout.n_steps)])
    barrier_step = np.concatenate([np.repeat(steps, layout.dp * n_pw), np.repeat(steps, n_ad)])
    barriers = pd.DataFrame({
        "kind": pd.Categorical.from_codes(kinds.astype(np.int64), categories=list(EDGE_KINDS)),
        "step": barrier_step,
        "size": np.bincount(members_barrier, minlength=len(kinds)),
    })
    return members_op, members_barrier, barriers


def _edges(schedule: Schedule, layout: _Layout, barrier_of: np.ndarray, members_op, members_barrier,
           barriers: pd.DataFrame) -> Edges:
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
    member_kind = barriers["kind"].cat.codes.to_numpy()[members_barrier]
    return Edges(
        src=np.concatenate([provider[intra_src], members_op, source]).astype(np.int64),
        dst=np.concatenate([intra_dst, layout.n_ops + members_barrier, orphan]).astype(np.int64),
        via=np.concatenate([intra_src, np.full(len(members_op) + len(orphan), -1)]).astype(np.int64),
        kind=np.concatenate([intra_kind, member_kind,
                             np.full(len(orphan), KIND_CODE["step-start"])]).astype(np.int8),
    )


def _provider(barrier_of: np.ndarray) -> np.ndarray:
    """Each op's end is measured from its barrier (group member) or from itself (local op)."""
    return np.where(barrier_of >= 0, barrier_of, np.arange(len(barrier_of)))
