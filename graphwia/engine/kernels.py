"""The compiled evaluation kernel: the longest-path pass as a numba loop over a step's nodes.

:class:`Plan` holds one step's graph in topological order (a CSR of incoming
edges per node) and :func:`run` evaluates a batch of scenarios on it: every
(step, block of :data:`BLOCK` scenarios) is one work item, spread over all
cores; a work item walks the step's nodes in order, each node taking the
latest arrival over its incoming edges. A value is kept only while it is
still to be read, in a register shared with values alive at other times
(:class:`Plan`): a work item then touches a few hundred kB, not 16 bytes per
node and scenario, and stays in its core's cache (on a step of 94,000 ops the
swap form ran 1.5–3× faster than with a slot per value). The arithmetic is the numpy path's
(:mod:`graphwia.engine.evaluate`), operation for operation, so both give
bit-identical times.

Weights come in one of three forms (:data:`DENSE`, :data:`SWAP`, :data:`EDITED`):

* dense: ``weight`` / ``delay`` of shape (n_ops, n_scenarios), copied per
  work item in row order (a sequential read; the nodes' order would read
  the rows out of order);
* swap: every scenario ``k`` takes ``chosen`` weights on the ops with
  ``group == first_group + k`` and ``weight`` elsewhere (each of shape
  (n_ops, 1)): the form of attribution families, which then need no
  (n_ops, n_scenarios) matrix at all;
* edited: every scenario is the baseline ``weight`` / ``delay`` (each (n_ops, 1))
  with the edits of ``edits`` (:class:`~graphwia.engine.scenarios.EditTable`),
  applied per work item: the form of what-if batches, which then need no
  matrix either.

Importing this module imports numba (0.3–0.5 s and 120 MB; loading the
compiled code takes 0.2–0.5 s more, most of it numba readying its compiler
once per process), so :mod:`graphwia.engine.evaluate` imports it only for
batches large enough to pay for that; the compiled code is cached on disk
(``cache=True``).
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import threading
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from graphwia.engine.scenarios import SET, VALUES, WEIGHT, EditTable
from graphwia.utils.system import usable_cpus

__all__ = ["BLOCK", "CACHING", "Plan", "compile_all", "is_compiled", "make_plan", "propagate", "run"]

#: Whether numba keeps the compiled kernels on disk (see _cached_jit): False where it finds no
#: writable place for its cache, and every process then compiles them again.
CACHING = True


def _cached_jit(**options):
    """``numba.njit(cache=True, **options)``; without the disk cache where numba finds no writable
    place for it (a read-only install and home directory, as in some containers), where numba
    itself would refuse to compile: the kernels then work, compiled anew in every process
    (:data:`CACHING` is False and :func:`is_compiled` says so)."""

    def decorate(function):
        global CACHING
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            CACHING = False
            return numba.njit(**options)(function)

    return decorate


def _n_threads() -> int:
    """Threads a kernel call spreads its work items over: numba's (its pool is sized by the CPU affinity,
    or by ``numba.set_num_threads``), no more than the CPUs a container's quota allows
    (:func:`~graphwia.utils.system.usable_cpus`): each thread keeps a work item's buffers."""
    return max(1, min(numba.get_num_threads(), usable_cpus()))


DENSE, SWAP, EDITED = 0, 1, 2
#: Scenarios evaluated together by one work item: one 64-byte cache line of node times.
BLOCK = 8
#: numba's default threading layer runs one parallel kernel at a time per process.
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Plan:
    """One step's graph in topological order, the way the kernel reads it.

    Node positions: ``n_sources`` nodes without incoming edges first (time 0),
    then the others in topological order. Incoming edges of the node at
    position ``n_sources + i`` are ``ptr[i] … ptr[i+1]−1``. The kernel keeps
    two values per position, its time (an op's start, a barrier's time) in
    slot ``2·position`` and an op's end in ``2·position + 1``; an edge brings
    slot ``src`` (SPEC §4: a local op ends at its start + weight, a group
    member at its barrier's time + its weight; a member's start goes into its
    barrier).
    ``target_op`` is the op at each such position (−1: a barrier) and
    ``local`` whether that op ends on its own (not a group member); ``op_at``
    the op at every position (−1: none). ``optimizer`` flags the ops whose
    latest end is the step time (SPEC §4); ``finisher`` is the position where
    each op's end is computed (its own, or its barrier's). ``out_ptr`` /
    ``out_dst``: the positions each slot's value flows into (for
    propagating changes).

    :func:`run` keeps a slot's value only while it is still to be read: slots
    never alive together share one of ``n_registers`` registers (2,693 for the
    245,172 slots of a step of 94,000 ops), so a work item's values stay in the
    core's own cache. ``reg_src`` is the register each edge reads, ``reg_time``
    / ``reg_end`` those a node writes its time / its end to (``reg_end``: an op
    that ends on its own), ``reg_member`` (per edge into a barrier) the register
    of that member's end and ``member_op`` its op. Register 0 holds the
    sources' time, 0.
    """

    n_nodes: int
    n_sources: int
    ptr: np.ndarray
    src: np.ndarray
    target_op: np.ndarray
    local: np.ndarray
    op_at: np.ndarray
    optimizer: np.ndarray
    finisher: np.ndarray
    out_ptr: np.ndarray
    out_dst: np.ndarray
    n_registers: int
    reg_src: np.ndarray
    reg_time: np.ndarray
    reg_end: np.ndarray
    reg_member: np.ndarray
    member_op: np.ndarray


def make_plan(
    n_nodes: int,
    per_step: int,
    src: np.ndarray,
    dst: np.ndarray,
    via: np.ndarray,
    provider: np.ndarray,
    optimizer: np.ndarray,
) -> Plan:
    """The :class:`Plan` of one step's graph: edges ``src → dst`` adding the weight of ``via`` (−1: none).

    Nodes are ordered topologically, but as close to node-id order as the
    edges allow (a barrier right after its first member): an op's weights
    and a worker's chain of ops are then read nearly in memory order.
    """
    op_key = np.arange(n_nodes, dtype=np.int64) * 2
    first_member = np.full(n_nodes, n_nodes, dtype=np.int64)
    np.minimum.at(first_member, dst, np.where(dst >= per_step, src, n_nodes))
    key = np.where(np.arange(n_nodes) < per_step, op_key, first_member * 2 + 1)
    order = np.argsort(src, kind="stable")
    out_ptr = np.searchsorted(src[order], np.arange(n_nodes + 1)).astype(np.int64)
    nodes = _priority_order(
        n_nodes, key, out_ptr, dst[order].astype(np.int64), np.bincount(dst, minlength=n_nodes).astype(np.int64)
    )
    position = np.empty(n_nodes, dtype=np.int64)
    position[nodes] = np.arange(n_nodes)
    n_sources = int(np.sum(np.bincount(dst, minlength=n_nodes) == 0))
    edge_order = np.argsort(position[dst], kind="stable")
    src, dst, via = src[edge_order], dst[edge_order], via[edge_order]
    first = np.flatnonzero(np.diff(position[dst], prepend=-1))
    targets = dst[first]
    op_at = np.full(n_nodes, -1, dtype=np.int64)
    op_at[position[:per_step]] = np.arange(per_step)
    target_op = np.where(targets < per_step, targets, -1)
    flags = np.zeros(per_step, dtype=np.bool_)
    flags[optimizer] = True
    ends = via >= 0
    safe_op = np.maximum(target_op, 0)
    slot = (2 * np.where(ends, position[np.maximum(via, 0)], position[src]) + ends).astype(np.int64)
    by_slot = np.argsort(slot, kind="stable")
    ptr = np.append(first, len(dst)).astype(np.int64)
    target_op = target_op.astype(np.int64)
    local = (target_op >= 0) & (provider[safe_op] == safe_op)
    register, n_registers = _allocate_registers(n_sources, ptr, slot, target_op, local)
    node_slot = 2 * (n_sources + np.arange(len(ptr) - 1))
    return Plan(
        n_nodes=n_nodes,
        n_sources=n_sources,
        ptr=ptr,
        src=slot,
        target_op=target_op,
        local=local,
        op_at=op_at,
        optimizer=flags,
        finisher=position[provider].astype(np.int64),
        out_ptr=np.searchsorted(slot[by_slot], np.arange(2 * n_nodes + 1)).astype(np.int64),
        out_dst=position[dst][by_slot].astype(np.int64),
        n_registers=int(n_registers),
        reg_src=register[slot],
        reg_time=register[node_slot],
        reg_end=np.where(local, register[node_slot + 1], 0),
        reg_member=register[slot | 1],  # into a barrier, an edge brings a member's start: its end is next
        member_op=op_at[slot // 2],
    )


@_cached_jit()
def _allocate_registers(n_sources, ptr, src, target_op, local):
    """A register for every slot (see :class:`Plan`), slots never alive together sharing one: (register, count).

    A slot is alive from the node that writes it to the last node that reads
    it; a node reads all its edges before it writes. Nodes are taken in order:
    the registers of the slots last read at a node are free for the slots it
    writes, and a slot nobody reads frees its register at once. The sources'
    slots all share register 0, never reused: it holds time 0.
    """
    n_slots = 2 * (n_sources + len(ptr) - 1)
    last_read = np.full(n_slots, -1, dtype=np.int64)
    for i in range(len(ptr) - 1):
        for e in range(ptr[i], ptr[i + 1]):
            last_read[src[e]] = n_sources + i
    register = np.zeros(n_slots, dtype=np.int64)
    by_last_read = np.argsort(last_read, kind="mergesort")
    free = np.empty(n_slots, dtype=np.int64)
    written = np.empty(n_slots, dtype=np.int64)
    n_free, n_registers, cursor = 0, 1, 0
    for i in range(len(ptr) - 1):
        node = n_sources + i
        while cursor < n_slots and last_read[by_last_read[cursor]] <= node:
            slot = by_last_read[cursor]
            if last_read[slot] == node and slot >= 2 * n_sources:
                free[n_free] = register[slot]
                n_free += 1
            cursor += 1
        written[0] = 2 * node
        n_written = 1
        if target_op[i] < 0:  # a barrier: its members end here
            for e in range(ptr[i], ptr[i + 1]):
                written[n_written] = src[e] | 1
                n_written += 1
        elif local[i]:
            written[1] = 2 * node + 1
            n_written = 2
        for j in range(n_written):
            if n_free > 0:
                n_free -= 1
                register[written[j]] = free[n_free]
            else:
                register[written[j]] = n_registers
                n_registers += 1
        for j in range(n_written):
            if last_read[written[j]] < node:  # never read
                free[n_free] = register[written[j]]
                n_free += 1
    return register, n_registers


@_cached_jit()
def _priority_order(n_nodes, key, out_ptr, out_dst, indegree):
    """Kahn's topological order, always taking the ready node of smallest ``key``."""
    heap = [key[0] * n_nodes][:0]
    for node in range(n_nodes):
        if indegree[node] == 0:
            heap.append(key[node] * n_nodes + node)
    heapq.heapify(heap)
    order = np.empty(n_nodes, dtype=np.int64)
    count = 0
    while len(heap):
        node = heapq.heappop(heap) % n_nodes
        order[count] = node
        count += 1
        for j in range(out_ptr[node], out_ptr[node + 1]):
            target = out_dst[j]
            indegree[target] -= 1
            if indegree[target] == 0:
                heapq.heappush(heap, key[target] * n_nodes + target)
    return order


def run(
    plan: Plan,
    n_steps: int,
    n_scenarios: int,
    mode: int,
    weight: np.ndarray,
    delay: np.ndarray | None,
    *,
    chosen_weight: np.ndarray | None = None,
    chosen_delay: np.ndarray | None = None,
    group: np.ndarray | None = None,
    first_group: int = 0,
    edits: EditTable | None = None,
    times: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Evaluate ``n_scenarios`` scenarios of every step: (step_time, span, start, end).

    ``step_time`` / ``span`` have shape (n_steps, n_scenarios); ``start`` / ``end``
    (n_ops, n_scenarios) (column-major: a scenario's times are contiguous), or None unless ``times``. See the module
    docstring for the three weight forms.
    """
    n_ops = len(plan.optimizer) * n_steps
    f64 = functools.partial(np.ascontiguousarray, dtype=np.float64)
    dummy = np.zeros((1, 1))
    has_delay = delay is not None
    weight, delay = f64(weight), f64(delay) if has_delay else dummy
    if mode == SWAP:
        chosen_weight = f64(chosen_weight)
        chosen_delay = f64(chosen_delay) if has_delay else dummy
        group = np.ascontiguousarray(group, dtype=np.int64)
    else:
        chosen_weight, chosen_delay, group = dummy, dummy, np.zeros(1, dtype=np.int64)
    step_time = np.empty((n_steps, n_scenarios))
    span = np.empty((n_steps, n_scenarios))
    # Scenario-major: a work item writes each of its scenarios' rows in op order (op-major rows
    # would put every op's block on a line and page of its own). Returned transposed, (n_ops, n).
    start = np.empty((n_scenarios, n_ops)) if times else dummy
    end = np.empty((n_scenarios, n_ops)) if times else dummy
    with _LOCK:
        _relax(
            plan.n_registers,
            plan.ptr,
            plan.reg_src,
            plan.reg_time,
            plan.reg_end,
            plan.reg_member,
            plan.member_op,
            plan.target_op,
            plan.local,
            plan.optimizer,
            n_steps,
            n_scenarios,
            _n_threads(),
            mode,
            weight,
            delay,
            has_delay,
            chosen_weight,
            chosen_delay,
            group,
            first_group,
            _edit_tuple(edits),
            times,
            step_time,
            span,
            start,
            end,
        )
    return step_time, span, (start.T if times else None), (end.T if times else None)


def _edit_tuple(edits: EditTable | None) -> tuple:
    """``edits`` as the kernel reads them (a tuple of its arrays), or a tuple of the same types that
    stands for none: one compiled kernel serves every form."""
    if edits is None:
        i64, f64 = np.zeros(1, dtype=np.int64), np.zeros(1)
        return (i64, i64, i64, f64, i64, i64, i64, i64, f64, i64, np.zeros(1, dtype=np.bool_))
    return tuple(getattr(edits, field.name) for field in dataclasses.fields(edits))


@numba.njit(inline="always")
def _stage(values, base, k0, width, out):
    """Dense columns k0 … k0+width−1 of a step's rows (base …) into ``out`` (per_step, BLOCK); lanes past
    ``width`` keep what they held (finite numbers, never written out)."""
    for op in range(out.shape[0]):
        for b in range(width):
            out[op, b] = values[base + op, k0 + b]


@numba.njit(inline="always")
def _stage_edited(weight, delay, has_delay, edits, base, k0, width, weights, delays):
    """Edited form: columns k0 … k0+width−1 of a step's rows (base …) into ``weights`` / ``delays``
    (per_step, BLOCK): the baseline's ``weight`` / ``delay`` (n_ops, 1), then each column's edits
    (:class:`~graphwia.engine.scenarios.EditTable`, as a tuple) on the ops of this step.

    The arithmetic of :meth:`graphwia.engine.scenarios.Edited.take`, so the same numbers.
    """
    column_ptr, array, kind, value, target, source, targets, target_ptr, values, value_ptr, zero_delay = edits
    per_step = weights.shape[0]
    for op in range(per_step):
        w = weight[base + op, 0]
        for b in range(BLOCK):
            weights[op, b] = w
    if has_delay:
        for op in range(per_step):
            d = delay[base + op, 0]
            for b in range(width):
                delays[op, b] = 0.0 if zero_delay[k0 + b] else d
    for b in range(width):
        for e in range(column_ptr[k0 + b], column_ptr[k0 + b + 1]):
            lo, hi = target_ptr[target[e]], target_ptr[target[e] + 1]
            first = lo + np.searchsorted(targets[lo:hi], base)
            last = lo + np.searchsorted(targets[lo:hi], base + per_step)
            out = weights if array[e] == WEIGHT else delays
            if kind[e] == VALUES:
                offset = value_ptr[source[e]] - lo
                for j in range(first, last):
                    out[targets[j] - base, b] = values[offset + j]
            elif kind[e] == SET:
                for j in range(first, last):
                    out[targets[j] - base, b] = value[e]
            else:
                for j in range(first, last):
                    out[targets[j] - base, b] *= value[e]


@numba.njit(inline="always")
def _load(values, chosen, group, first_group, row, k0, width, out):
    """Swap form: op row ``row``'s weights (or delays) in scenario columns k0 … k0+width−1 into ``out`` (BLOCK,).

    See the module docstring.
    """
    value = values[row, 0]
    for b in range(BLOCK):
        out[b] = value
    b = group[row] - first_group - k0
    if 0 <= b < width:
        out[b] = chosen[row, 0]


#: max/min compile to a compare and a select when NaNs need not propagate, with no NaN branch;
#: signed zeros likewise. Both only matter for NaN or −0.0 inputs, which weights never are.
_FAST = {"nnan", "nsz"}


@_cached_jit(parallel=True, nogil=True, fastmath=_FAST)
def _relax(
    n_registers,
    ptr,
    reg_src,
    reg_time,
    reg_end,
    reg_member,
    member_op,
    target_op,
    local,
    optimizer,
    n_steps,
    n_cols,
    n_threads,
    mode,
    weight,
    delay,
    has_delay,
    chosen_weight,
    chosen_delay,
    group,
    first_group,
    edits,
    times,
    step_time,
    span,
    start,
    end,
):
    per_step = len(optimizer)
    n_blocks = (n_cols + BLOCK - 1) // BLOCK
    n_items = n_steps * n_blocks
    has_optimizer = np.any(optimizer)
    for thread in numba.prange(n_threads):
        values = np.zeros((n_registers, BLOCK))  # see Plan; register 0 is the sources' time, 0
        latest = np.empty(BLOCK)
        lane = np.zeros(BLOCK)  # one op's weights or delays
        # Dense columns are copied per work item in row order, a sequential read: the nodes' order
        # would read the rows out of order, a cache miss per op.
        staged = mode != SWAP
        weights = np.zeros((per_step if staged else 1, BLOCK))
        delays = np.zeros((per_step if staged and has_delay else 1, BLOCK))
        first_start, last_end, last_optimizer = np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK)
        for item in range(thread, n_items, n_threads):
            step, k0 = item // n_blocks, (item % n_blocks) * BLOCK
            width = min(BLOCK, n_cols - k0)
            base = step * per_step
            if mode == DENSE:
                _stage(weight, base, k0, width, weights)
                if has_delay:
                    _stage(delay, base, k0, width, delays)
            elif mode == EDITED:
                _stage_edited(weight, delay, has_delay, edits, base, k0, width, weights, delays)
            first_start[:] = np.inf
            last_end[:] = -np.inf
            last_optimizer[:] = -np.inf
            for i in range(len(ptr) - 1):  # nodes in topological order, after the sources
                latest[:] = -np.inf
                for e in range(ptr[i], ptr[i + 1]):
                    r = reg_src[e]
                    for b in range(BLOCK):
                        latest[b] = max(latest[b], values[r, b])
                op = target_op[i]
                r = reg_time[i]
                if op >= 0:
                    if has_delay:
                        if staged:
                            for b in range(BLOCK):
                                latest[b] += delays[op, b]
                        else:
                            _load(delay, chosen_delay, group, first_group, base + op, k0, width, lane)
                            for b in range(BLOCK):
                                latest[b] += lane[b]
                    for b in range(BLOCK):
                        values[r, b] = latest[b]
                        first_start[b] = min(first_start[b], latest[b])
                    if times:
                        for b in range(width):
                            start[k0 + b, base + op] = latest[b]
                    if local[i]:
                        if staged:
                            lane[:] = weights[op]
                        else:
                            _load(weight, chosen_weight, group, first_group, base + op, k0, width, lane)
                        _finish(lane, latest, values, reg_end[i], optimizer[op], last_end, last_optimizer)
                        if times:
                            for b in range(width):
                                end[k0 + b, base + op] = values[reg_end[i], b]
                else:  # a barrier: its members end now
                    for b in range(BLOCK):
                        values[r, b] = latest[b]
                    for e in range(ptr[i], ptr[i + 1]):
                        member = member_op[e]
                        if staged:
                            lane[:] = weights[member]
                        else:
                            _load(weight, chosen_weight, group, first_group, base + member, k0, width, lane)
                        _finish(lane, latest, values, reg_member[e], optimizer[member], last_end, last_optimizer)
                        if times:
                            for b in range(width):
                                end[k0 + b, base + member] = values[reg_member[e], b]
            for b in range(width):
                span[step, k0 + b] = last_end[b] - first_start[b]
                step_time[step, k0 + b] = last_optimizer[b] if has_optimizer else span[step, k0 + b]


@numba.njit(inline="always", fastmath=_FAST)
def _finish(weight, ready, values, register, is_optimizer, last_end, last_optimizer):
    """An op ends at ``ready`` + ``weight``: store it in ``values[register]`` and the step's maxima.

    (Indices, not row views: a view per op would cost two atomic reference counts.)
    """
    for b in range(BLOCK):
        values[register, b] = ready[b] + weight[b]
        last_end[b] = max(last_end[b], values[register, b])
    if is_optimizer:
        for b in range(BLOCK):
            last_optimizer[b] = max(last_optimizer[b], values[register, b])


def propagate(
    plan: Plan,
    n_steps: int,
    n_scenarios: int,
    weight: np.ndarray,
    delay: np.ndarray | None,
    chosen_weight: np.ndarray,
    chosen_delay: np.ndarray | None,
    group: np.ndarray,
    *,
    first_group: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A swap family's (step_time, span), each (n_steps, n_scenarios), by propagating changes only.

    Each step is evaluated once with ``weight`` / ``delay`` everywhere (the
    reference); a scenario then recomputes, in topological order, only the
    nodes downstream of its group's ops whose value differs from the
    reference, and stops where a change is absorbed (a max that another
    arrival still wins). Same arithmetic as :func:`run`, so the same numbers;
    it pays when a scenario's group is a small part of the job (one worker
    of many), not when its changes reach most of a step.
    """
    per_step = len(plan.optimizer)
    f64 = functools.partial(np.ascontiguousarray, dtype=np.float64)
    has_delay = delay is not None
    group = np.ascontiguousarray(group, dtype=np.int64)
    rows = np.flatnonzero((group >= first_group) & (group < first_group + n_scenarios))
    cell = (group[rows] - first_group) * n_steps + rows // per_step  # (scenario, step) of each chosen op
    members = rows[np.argsort(cell, kind="stable")]
    members_ptr = np.searchsorted(np.sort(cell), np.arange(n_scenarios * n_steps + 1))
    dummy = np.zeros((1, 1))
    step_time = np.empty((n_steps, n_scenarios))
    span = np.empty((n_steps, n_scenarios))
    with _LOCK:
        _propagate(
            plan.n_nodes,
            plan.n_sources,
            plan.ptr,
            plan.src,
            plan.target_op,
            plan.local,
            plan.op_at,
            plan.optimizer,
            plan.finisher,
            plan.out_ptr,
            plan.out_dst,
            n_steps,
            n_scenarios,
            _n_threads(),
            f64(weight),
            f64(delay) if has_delay else dummy,
            has_delay,
            f64(chosen_weight),
            f64(chosen_delay) if has_delay else dummy,
            group,
            first_group,
            members_ptr.astype(np.int64),
            members.astype(np.int64),
            _DE_BRUIJN_INDEX,
            step_time,
            span,
        )
    return step_time, span


@_cached_jit(parallel=True, nogil=True, fastmath=_FAST)
def _propagate(
    n_nodes,
    n_sources,
    ptr,
    src,
    target_op,
    local,
    op_at,
    optimizer,
    finisher,
    out_ptr,
    out_dst,
    n_steps,
    n_cols,
    n_threads,
    weight,
    delay,
    has_delay,
    chosen_weight,
    chosen_delay,
    group,
    first_group,
    members_ptr,
    members,
    bit_index,
    step_time,
    span,
):
    per_step = len(optimizer)
    op_pos = np.empty(per_step, dtype=np.int64)
    for position in range(n_nodes):
        if op_at[position] >= 0:
            op_pos[op_at[position]] = position
    optimizer_ops = np.flatnonzero(optimizer)
    n_items = n_steps * n_threads  # (step, share of the scenarios)
    for thread in numba.prange(n_threads):
        reference = np.zeros(2 * n_nodes)
        current = np.zeros(2 * n_nodes)
        stamp = np.full(2 * n_nodes, -1)  # current[slot] holds this scenario's value when stamp[slot] == its id
        dirty = np.zeros((n_nodes >> 6) + 1, dtype=np.int64)  # bit p: position p is to be recomputed
        ends = np.empty(per_step)
        starts = np.empty(per_step)
        scenario_id = 0
        for item in range(thread, n_items, n_threads):
            step, share = item // n_threads, item % n_threads
            lo, hi = n_cols * share // n_threads, n_cols * (share + 1) // n_threads
            if lo == hi:
                continue
            base = step * per_step
            _reference(n_sources, ptr, src, target_op, local, op_at, base, weight, delay, has_delay, reference)
            for op in range(per_step):
                starts[op] = reference[2 * op_pos[op]]
                ends[op] = reference[2 * op_pos[op] + 1]
            by_end = np.argsort(ends)[::-1]
            by_start = np.argsort(starts)
            reference_optimizer = -np.inf
            for op in optimizer_ops:
                reference_optimizer = max(reference_optimizer, ends[op])
            for k in range(lo, hi):
                scenario_id += 1
                g = first_group + k
                cell = k * n_steps + step
                first_word, last_word = len(dirty), -1
                for j in range(members_ptr[cell], members_ptr[cell + 1]):
                    op = members[j] - base
                    for position in (op_pos[op], finisher[op]):
                        dirty[position >> 6] |= np.int64(1) << (position & 63)
                        first_word, last_word = min(first_word, position >> 6), max(last_word, position >> 6)
                changed_end, changed_start, optimizer_changed = -np.inf, np.inf, False
                word = first_word
                while word <= last_word:  # positions in increasing (topological) order
                    if dirty[word] == 0:
                        word += 1
                        continue
                    bits = dirty[word]
                    lowest = bits & -bits
                    dirty[word] = bits ^ lowest
                    position = (word << 6) | bit_index[((lowest * _DE_BRUIJN) >> 58) & 63]
                    i = position - n_sources
                    slot = 2 * position
                    latest = -np.inf
                    for e in range(ptr[i], ptr[i + 1]):
                        s = src[e]
                        latest = max(latest, current[s] if stamp[s] == scenario_id else reference[s])
                    op = target_op[i]
                    if op >= 0:
                        row = base + op
                        if has_delay:
                            latest += chosen_delay[row, 0] if group[row] == g else delay[row, 0]
                        if latest != reference[slot]:
                            last_word = _change(
                                slot, latest, scenario_id, current, stamp, out_ptr, out_dst, dirty, last_word
                            )
                            changed_start = min(changed_start, latest)
                        if local[i]:
                            end = latest + (chosen_weight[row, 0] if group[row] == g else weight[row, 0])
                            if end != reference[slot + 1]:
                                last_word = _change(
                                    slot + 1, end, scenario_id, current, stamp, out_ptr, out_dst, dirty, last_word
                                )
                                changed_end = max(changed_end, end)
                                optimizer_changed |= optimizer[op]
                    else:
                        if latest != reference[slot]:
                            last_word = _change(
                                slot, latest, scenario_id, current, stamp, out_ptr, out_dst, dirty, last_word
                            )
                        for e in range(ptr[i], ptr[i + 1]):
                            member = src[e] // 2
                            row = base + op_at[member]
                            end = latest + (chosen_weight[row, 0] if group[row] == g else weight[row, 0])
                            if end != reference[2 * member + 1]:
                                last_word = _change(
                                    2 * member + 1, end, scenario_id, current, stamp, out_ptr, out_dst, dirty, last_word
                                )
                                changed_end = max(changed_end, end)
                                optimizer_changed |= optimizer[op_at[member]]
                # Extremes over the step: changed ops' new values, and the best unchanged reference one.
                last_end = changed_end
                for op in by_end:
                    if stamp[2 * op_pos[op] + 1] != scenario_id:
                        last_end = max(last_end, ends[op])
                        break
                first_start = changed_start
                for op in by_start:
                    if stamp[2 * op_pos[op]] != scenario_id:
                        first_start = min(first_start, starts[op])
                        break
                span[step, k] = last_end - first_start
                if len(optimizer_ops) == 0:
                    step_time[step, k] = span[step, k]
                elif optimizer_changed:
                    latest = -np.inf
                    for op in optimizer_ops:
                        s = 2 * op_pos[op] + 1
                        latest = max(latest, current[s] if stamp[s] == scenario_id else reference[s])
                    step_time[step, k] = latest
                else:
                    step_time[step, k] = reference_optimizer


@numba.njit(inline="always")
def _change(slot, value, scenario_id, current, stamp, out_ptr, out_dst, dirty, last_word):
    """Give ``slot`` a value other than the reference's and mark the nodes it flows into; the new last word."""
    current[slot] = value
    stamp[slot] = scenario_id
    for j in range(out_ptr[slot], out_ptr[slot + 1]):
        target = out_dst[j]
        dirty[target >> 6] |= np.int64(1) << (target & 63)
        last_word = max(last_word, target >> 6)
    return last_word


#: Index of the lowest set bit of a 64-bit word by a de Bruijn multiplication (numba has no ctz).
_DE_BRUIJN = np.int64(0x022FDD63CC95386D)
_DE_BRUIJN_INDEX = np.zeros(64, dtype=np.int64)
for _bit in range(64):
    _DE_BRUIJN_INDEX[((int(_DE_BRUIJN) << _bit) & (2**64 - 1)) >> 58] = _bit


@numba.njit(inline="always", fastmath=_FAST)
def _reference(n_sources, ptr, src, target_op, local, op_at, base, weight, delay, has_delay, values):
    """One scenario of one step, every weight from column 0 of ``weight`` / ``delay``, into ``values`` (slots)."""
    values[: 2 * n_sources] = 0.0
    for i in range(len(ptr) - 1):
        slot = 2 * (n_sources + i)
        latest = -np.inf
        for e in range(ptr[i], ptr[i + 1]):
            latest = max(latest, values[src[e]])
        op = target_op[i]
        if op >= 0:
            if has_delay:
                latest += delay[base + op, 0]
            values[slot] = latest
            if local[i]:
                values[slot + 1] = latest + weight[base + op, 0]
        else:
            values[slot] = latest
            for e in range(ptr[i], ptr[i + 1]):
                member = src[e] // 2
                values[2 * member + 1] = latest + weight[base + op_at[member], 0]


# -- the disk cache ---------------------------------------------------------------------------

#: Every kernel numba caches on disk (``cache=True``); the inline helpers are compiled into them.
_CACHED: tuple[Any, ...] = (_allocate_registers, _priority_order, _relax, _propagate)  # numba's Dispatcher


def is_compiled() -> bool:
    """Whether every kernel of this module is compiled already: loaded in this process, or in numba's
    disk cache for this source and this machine's CPU. If not, their first use compiles them
    (30–50 s: once per installation, or in every process where :data:`CACHING` is False).

    Reads numba's cache index, which numba keeps private: should its layout change, this says
    True (the kernels then compile, if they must, without a word said).
    """
    if all(kernel.signatures for kernel in _CACHED):
        return True
    if not CACHING:
        return False
    try:
        for kernel in _CACHED:
            cache, codegen = kernel._cache, kernel.targetctx.codegen()
            keys = cache._cache_file._load_index()  # {} when missing or from another source
            if not any(key == cache._index_key(key[0], codegen) for key in keys):
                return False
    except Exception:  # numba's private cache layout changed: see the docstring
        return True
    return True


def compile_all(plan: Plan) -> None:
    """Compile every kernel now (or load it from the disk cache), by running each once: one
    scenario of one step of ``plan``, a few microseconds' work."""
    per_step = len(plan.optimizer)
    weight = np.ones((per_step, 1))
    run(plan, 1, 1, DENSE, weight, None)
    propagate(plan, 1, 1, weight, None, weight, None, np.zeros(per_step, dtype=np.int64))
