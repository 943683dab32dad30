"""Synthetic training traces: a Megatron-style job simulated under the SPEC §4 timing model.

:func:`synthesize` builds the per-stage program of one training step (1F1B, or interleaved
1F1B when ``vpp >= 2``), turns it into *calls* (what one worker issues at once: a compute,
a batched p2p exchange, a collective) and *records* (the trace rows of a call), and then
simulates every (dp_rank, step) at once with numpy: the Python loops run over the schedule's
slots, never over op instances.

Timing model, consistent with SPEC §4 (so the base simulation of graphwia reproduces it):

* a call starts at ``max(end of its predecessor calls) + launch gap``; the first call of a
  stream starts at the step start plus a small jitter;
* a local record (compute, gc, layernorm, optimizer, a p2p no-op) lasts its duration;
* a record in a synchronising group (p2p pair, DP collective across dp ranks, embedding
  pair, clip barrier) ends at ``max(start of the group's members) + its transfer time``;
* a call ends when all its records have ended, and every record of a call is written with the
  call's start and end -- a batched ``send_forward_recv_backward`` shows as two records with
  the same start and duration, as in the real traces.

A worker runs its program in order on one stream (the main stream), so its predecessors are a
superset of the SPEC §2.1 edges and every launch delay graphwia infers is >= 0. DP collectives
that overlap with compute (``params-all-gather`` of later chunks, per-chunk
``grads-reduce-scatter`` with ``dp_overlap``) run on a second, DP stream.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from graphwia.errors import UsageError
from graphwia.optypes import (
    BACKWARD_COMPUTE,
    BACKWARD_RECV,
    BACKWARD_SEND,
    CLIP,
    EMBEDDING,
    FORWARD_COMPUTE,
    FORWARD_RECV,
    FORWARD_SEND,
    GC,
    GRADS_REDUCE_SCATTER,
    LAYERNORM,
    OPTIMIZER,
    PARAMS_ALL_GATHER,
    SEPARATE_GRADS_ALL_REDUCE,
)
from graphwia.trace.optable import COLUMNS as TRACE_COLUMNS
from graphwia.utils.names import check_name
from graphwia.utils.system import physical_memory

__all__ = [
    "BACKWARD_S",
    "BYTES_PER_ROW",
    "CLIP_S",
    "COLUMNS",
    "DURATION_NOISE_CV",
    "EMBEDDING_S",
    "FORWARD_S",
    "GC_S",
    "GRADS_REDUCE_SCATTER_S",
    "LAUNCH_GAP_S",
    "LAYERNORM_S",
    "NOISE_CLIP",
    "OPTIMIZER_S",
    "OPTYPES",
    "OPTYPE_DTYPE",
    "P2P_NOOP_S",
    "P2P_TRANSFER_S",
    "PARAMS_ALL_GATHER_S",
    "SEPARATE_ALL_REDUCE_S",
    "STEP_GAP_S",
    "STREAM_START_JITTER_S",
    "SynthArgumentError",
    "max_rows",
    "schedule_1f1b",
    "schedule_interleaved",
    "synthesize",
    "virtual_chunk",
    "virtual_microbatch",
    "write_synth",
    "write_trace_files",
]


#: Categories of the ``optype`` column, sorted like the real traces' categories.
OPTYPES = tuple(
    sorted(
        (
            FORWARD_COMPUTE,
            BACKWARD_COMPUTE,
            GC,
            OPTIMIZER,
            FORWARD_SEND,
            FORWARD_RECV,
            BACKWARD_SEND,
            BACKWARD_RECV,
            PARAMS_ALL_GATHER,
            GRADS_REDUCE_SCATTER,
            SEPARATE_GRADS_ALL_REDUCE,
            LAYERNORM,
            EMBEDDING,
            CLIP,
        )
    )
)
OPTYPE_DTYPE = pd.CategoricalDtype(list(OPTYPES))

#: Output columns (SPEC §1) and their dtypes, as the trace loader validates them; ``optype`` is categorical.
COLUMNS = {**TRACE_COLUMNS, "optype": None}

# Base durations in seconds, for a stage holding its whole model slice (vpp = 1); a chunk of
# an interleaved schedule holds 1/vpp of the layers, so its compute and DP volumes scale.
FORWARD_S = 0.060
BACKWARD_S = 0.120  # backward ~ 2x forward, as in the real traces
P2P_TRANSFER_S = 0.0005
P2P_NOOP_S = 0.00002  # a p2p record that never reached the wire
PARAMS_ALL_GATHER_S = 0.025
GRADS_REDUCE_SCATTER_S = 0.050
SEPARATE_ALL_REDUCE_S = 0.010
LAYERNORM_S = 0.00005
EMBEDDING_S = 0.005
CLIP_S = 0.002
OPTIMIZER_S = 0.040
GC_S = 0.001
DURATION_NOISE_CV = 0.03  # "a few %" of per-op noise
NOISE_CLIP = 3.0  # noise is clipped at +-3 sigma so no duration gets near zero
LAUNCH_GAP_S = 0.00002  # mean of the exponential CPU-side gap before each call
STREAM_START_JITTER_S = 0.002  # mean delay of each stream's first call after the step start
STEP_GAP_S = 0.1  # idle time between consecutive steps in the output epoch


class SynthArgumentError(UsageError, ValueError):
    """An argument of :func:`synthesize` the generator cannot honour; ``argument`` names it."""

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument


@dataclass
class _Record:
    """One trace row template: the same named op on every (dp_rank, step) of its stage."""

    stage: int
    optype: str
    call: int
    mc: int = -1
    gmc: int = -1
    mb_id: int = -1
    base_s: float = 0.0  # duration (local) or transfer time (group member)
    is_compute: bool = False  # forward/backward compute: scaled by the injected causes
    seq_id: int = -1
    group: int = -1  # index into _Program.groups, -1 for a local record


@dataclass
class _Call:
    """What one worker issues at once; starts after all ``preds`` (call indices) have ended."""

    stage: int
    preds: list[int]
    records: list[int] = field(default_factory=list)


@dataclass
class _Group:
    """Records that must all start before any ends; ``across_dp`` spans every dp rank too."""

    records: list[int]
    across_dp: bool


@dataclass
class _Program:
    """The whole job's step program: calls, records and synchronising groups."""

    calls: list[_Call] = field(default_factory=list)
    records: list[_Record] = field(default_factory=list)
    groups: list[_Group] = field(default_factory=list)

    def call(self, stage: int, preds: list[int | None]) -> int:
        self.calls.append(_Call(stage, [p for p in preds if p is not None]))
        return len(self.calls) - 1

    def record(self, call: int, optype: str, **attrs) -> int:
        self.records.append(_Record(stage=self.calls[call].stage, optype=optype, call=call, **attrs))
        self.calls[call].records.append(len(self.records) - 1)
        return len(self.records) - 1

    def group(self, records: list[int], across_dp: bool) -> None:
        for r in records:
            self.records[r].group = len(self.groups)
        self.groups.append(_Group(records, across_dp))


# ---------------------------------------------------------------------------------------------
# Schedules: the main-stream program of one stage as a list of items
#   ("F", k) / ("B", k)       the k-th forward / backward compute of the stage (its seq_id)
#   ("comm", [(optype, k)])   one batched p2p call; k is the compute the record is matched to,
#                             None for a record issued with nothing to transfer (type-1 no-op)
# ---------------------------------------------------------------------------------------------


def schedule_1f1b(stage: int, pp: int, microbatches: int) -> list:
    """Megatron's non-interleaved 1F1B: pp-stage-1 warm-up forwards, steady 1F1B, cool-down.

    Like Megatron (and the real traces), a first stage issues no forward-recv/backward-send
    and a last stage no forward-send/backward-recv at all.
    """
    first, last = stage == 0, stage == pp - 1
    warmup = min(pp - stage - 1, microbatches)
    steady = microbatches - warmup
    program: list = []

    def comm(*ops):
        ops = [op for op in ops if op is not None]
        if ops:
            program.append(("comm", ops))

    def fwd_recv(k):
        return None if first else (FORWARD_RECV, k)

    def fwd_send(k):
        return None if last else (FORWARD_SEND, k)

    def bwd_recv(k):
        return None if last else (BACKWARD_RECV, k)

    def bwd_send(k):
        return None if first else (BACKWARD_SEND, k)

    for k in range(warmup):
        comm(fwd_recv(k))
        program.append(("F", k))
        comm(fwd_send(k))
    if steady > 0:
        comm(fwd_recv(warmup))
    for i in range(steady):
        program.append(("F", warmup + i))
        comm(fwd_send(warmup + i), bwd_recv(i))  # send_forward_recv_backward
        program.append(("B", i))
        if i == steady - 1:
            comm(bwd_send(i))
        else:
            comm(bwd_send(i), fwd_recv(warmup + i + 1))  # send_backward_recv_forward
    for i in range(steady, microbatches):
        comm(bwd_recv(i))
        program.append(("B", i))
        comm(bwd_send(i))
    return program


def schedule_interleaved(stage: int, pp: int, vpp: int, microbatches: int) -> list:
    """Megatron's interleaved 1F1B over ``vpp`` model chunks (``microbatches % pp == 0``).

    Every p2p call records all of its slots, as the instrumented ``_communicate`` does: slots
    whose peer chunk does not exist become type-2 no-ops (SPEC §2.1.3), and the slots issued
    with nothing to transfer -- the backward-send of the last warm-up call, the forward-recv
    after the last forward, the backward-recv after the last backward -- type-1 no-ops.
    """
    total = microbatches * vpp
    warmup = min((pp - stage - 1) * 2 + (vpp - 1) * pp, total)
    steady = total - warmup

    def upcoming(k):
        return k if k < total else None

    program: list = [("comm", [(FORWARD_RECV, 0)])]
    for k in range(warmup):
        program.append(("F", k))
        if k == warmup - 1 and steady > 0:
            program.append(
                ("comm", [(FORWARD_SEND, k), (FORWARD_RECV, k + 1), (BACKWARD_SEND, None), (BACKWARD_RECV, 0)])
            )
        else:
            program.append(("comm", [(FORWARD_SEND, k), (FORWARD_RECV, upcoming(k + 1))]))
    for i in range(steady):
        program.append(("F", warmup + i))
        program.append(("B", i))
        program.append(
            (
                "comm",
                [
                    (FORWARD_SEND, warmup + i),
                    (BACKWARD_SEND, i),
                    (FORWARD_RECV, upcoming(warmup + i + 1)),
                    (BACKWARD_RECV, i + 1),
                ],
            )
        )
    if steady == 0:
        program.append(("comm", [(BACKWARD_RECV, 0)]))
    for k in range(steady, total):
        program.append(("B", k))
        program.append(("comm", [(BACKWARD_SEND, k), (BACKWARD_RECV, upcoming(k + 1))]))
    return program


def virtual_chunk(k: int, pp: int, vpp: int, forward: bool) -> int:
    """Model chunk of the k-th forward (backward) compute of a stage (Megatron's mapping)."""
    chunk = (k % (pp * vpp)) // pp
    return chunk if forward else vpp - 1 - chunk


def virtual_microbatch(k: int, pp: int, vpp: int) -> int:
    """Microbatch id of the k-th forward (backward) compute of a stage."""
    return (k // (pp * vpp)) * pp + k % pp


# ---------------------------------------------------------------------------------------------
# Building the job's program
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """The job's shape: what the step program depends on (not the timing)."""

    dp: int
    pp: int
    vpp: int
    microbatches: int
    dp_overlap: bool

    @property
    def uses_dp(self) -> bool:
        return self.dp > 1


def _build_program(layout: _Layout) -> _Program:
    """All stages' calls, records and groups for one step, with seq_ids assigned."""
    prog = _Program()
    p2p_by_key: dict[tuple[str, int, int], int] = {}  # (optype, gmc, mb_id) -> matched record
    tails = [_build_stage(prog, layout, stage, p2p_by_key) for stage in range(layout.pp)]
    _pair_p2p(prog, layout, p2p_by_key)
    _build_tail_groups(prog, layout, tails)
    _assign_seq_ids(prog)
    return prog


def _build_stage(prog: _Program, layout: _Layout, stage: int, p2p_by_key: dict) -> dict:
    """Add one stage's DP-stream and main-stream calls; return its tail records by optype."""
    pp, vpp = layout.pp, layout.vpp
    chunk_scale = 1.0 / vpp
    gather_of_chunk = {}
    dp_stream_last = None
    if layout.uses_dp:
        # params-all-gather of every chunk up front; later chunks overlap with compute
        for chunk in range(vpp):
            dp_stream_last = prog.call(stage, [dp_stream_last])
            rec = prog.record(dp_stream_last, PARAMS_ALL_GATHER, mc=chunk, base_s=PARAMS_ALL_GATHER_S * chunk_scale)
            prog.group([rec], across_dp=True)
            gather_of_chunk[chunk] = dp_stream_last

    if vpp == 1:
        schedule = schedule_1f1b(stage, pp, layout.microbatches)
    else:
        schedule = schedule_interleaved(stage, pp, vpp, layout.microbatches)

    def compute_attrs(direction: str, k: int) -> dict:
        chunk = virtual_chunk(k, pp, vpp, direction == "F")
        return dict(mc=chunk, gmc=stage + chunk * pp, mb_id=virtual_microbatch(k, pp, vpp))

    # the first call waits for the first all-gather, as in the real traces
    main_last = gather_of_chunk.get(0)
    chunk_started: set[int] = set()
    last_backward_of_chunk: dict[int, int] = {}
    for item in schedule:
        if item[0] == "comm":
            main_last = prog.call(stage, [main_last])
            for optype, k in item[1]:
                _add_p2p_record(prog, main_last, optype, k, compute_attrs, p2p_by_key)
            continue
        direction, k = item
        attrs = compute_attrs(direction, k)
        preds = [main_last]
        if direction == "F" and attrs["mc"] not in chunk_started:
            chunk_started.add(attrs["mc"])
            preds.append(gather_of_chunk.get(attrs["mc"]))
        main_last = prog.call(stage, preds)
        optype, base = (FORWARD_COMPUTE, FORWARD_S) if direction == "F" else (BACKWARD_COMPUTE, BACKWARD_S)
        prog.record(main_last, optype, base_s=base * chunk_scale, is_compute=True, **attrs)
        if direction == "B":
            last_backward_of_chunk[attrs["mc"]] = main_last

    overlapped = layout.uses_dp and layout.dp_overlap
    if overlapped:
        # each chunk's gradients are reduced as soon as its last backward is done
        for chunk in sorted(last_backward_of_chunk, key=last_backward_of_chunk.__getitem__):
            dp_stream_last = prog.call(stage, [dp_stream_last, last_backward_of_chunk[chunk]])
            rec = prog.record(
                dp_stream_last, GRADS_REDUCE_SCATTER, mc=chunk, base_s=GRADS_REDUCE_SCATTER_S * chunk_scale
            )
            prog.group([rec], across_dp=True)
    return _build_stage_tail(prog, layout, stage, main_last, dp_stream_last, overlapped)


def _add_p2p_record(prog, call, optype, k, compute_attrs, p2p_by_key) -> None:
    """A p2p record; matched ones are indexed by (optype, gmc, mb) for pairing later."""
    if k is None:  # type-1 no-op: issued with nothing to transfer
        prog.record(call, optype, base_s=P2P_NOOP_S)
        return
    direction = "F" if optype in (FORWARD_SEND, FORWARD_RECV) else "B"
    attrs = compute_attrs(direction, k)
    rec = prog.record(call, optype, base_s=P2P_TRANSFER_S)
    p2p_by_key[(optype, attrs["gmc"], attrs["mb_id"])] = rec


def _pair_p2p(prog: _Program, layout: _Layout, p2p_by_key: dict) -> None:
    """Group each send with the recv of the peer chunk (gmc +- 1, same microbatch).

    Records whose peer chunk does not exist (type-2 no-ops) stay local, with a no-op duration.
    """
    n_chunks = layout.pp * layout.vpp
    peer_of = {
        FORWARD_SEND: (FORWARD_RECV, +1),
        FORWARD_RECV: (FORWARD_SEND, -1),
        BACKWARD_SEND: (BACKWARD_RECV, -1),
        BACKWARD_RECV: (BACKWARD_SEND, +1),
    }
    for (optype, gmc, mb), rec in p2p_by_key.items():
        peer_optype, offset = peer_of[optype]
        peer_gmc = gmc + offset
        if not 0 <= peer_gmc < n_chunks:
            prog.records[rec].base_s = P2P_NOOP_S
            continue
        peer = p2p_by_key.get((peer_optype, peer_gmc, mb))
        if peer is None:
            raise AssertionError(f"no peer for {optype} of chunk {gmc}, microbatch {mb}")
        if optype in (FORWARD_SEND, BACKWARD_SEND):
            prog.group([rec, peer], across_dp=False)


def _build_stage_tail(prog, layout, stage, main_last, dp_stream_last, overlapped) -> dict:
    """gc -> layernorm -> [embedding] -> [reduce-scatters | separate all-reduce] -> clip -> optimizer."""
    tail: dict[str, int] = {}

    def add_tail_op(optype, preds, **attrs):
        call = prog.call(stage, preds)
        tail[optype] = prog.record(call, optype, **attrs)
        return call

    main_last = add_tail_op(GC, [main_last], base_s=GC_S, mb_id=0)  # the real traces give gc mb_id 0
    main_last = add_tail_op(LAYERNORM, [main_last, dp_stream_last if overlapped else None], base_s=LAYERNORM_S)
    if layout.pp > 1 and stage in (0, layout.pp - 1):
        main_last = add_tail_op(EMBEDDING, [main_last], base_s=EMBEDDING_S)
    if overlapped:  # implies uses_dp
        main_last = add_tail_op(SEPARATE_GRADS_ALL_REDUCE, [main_last], base_s=SEPARATE_ALL_REDUCE_S)
        prog.group([tail[SEPARATE_GRADS_ALL_REDUCE]], across_dp=True)
    elif layout.uses_dp:
        for chunk in range(layout.vpp):
            main_last = add_tail_op(
                GRADS_REDUCE_SCATTER, [main_last, dp_stream_last], mc=chunk, base_s=GRADS_REDUCE_SCATTER_S / layout.vpp
            )
            dp_stream_last = main_last
            prog.group([tail[GRADS_REDUCE_SCATTER]], across_dp=True)
    main_last = add_tail_op(CLIP, [main_last], base_s=CLIP_S)
    add_tail_op(OPTIMIZER, [main_last], base_s=OPTIMIZER_S)
    return tail


def _build_tail_groups(prog: _Program, layout: _Layout, tails: list[dict]) -> None:
    if layout.pp > 1:
        prog.group([tails[0][EMBEDDING], tails[-1][EMBEDDING]], across_dp=False)
    prog.group([tail[CLIP] for tail in tails], across_dp=True)


def _assign_seq_ids(prog: _Program) -> None:
    """seq_id = order of a stage's records of one optype; calls of a stage run in creation order
    on their stream, and the two streams never share an optype, so that is start-time order."""
    counters: dict[tuple[int, str], int] = defaultdict(int)
    for rec in prog.records:
        rec.seq_id = counters[(rec.stage, rec.optype)]
        counters[(rec.stage, rec.optype)] += 1


# ---------------------------------------------------------------------------------------------
# Simulation: every (dp_rank, step) at once, one numpy pass per event of the program
# ---------------------------------------------------------------------------------------------


def _event_order(prog: _Program) -> list[tuple[str, int]]:
    """The program's events in dependency order: ("start", call), ("barrier", group), ("end", call).

    A call starts after its predecessors' ends; a group's barrier comes after its members'
    starts; a call ends after its own start and the barriers of its records' groups. Ordering
    these events (not whole calls) matters: a batched p2p call may end only after a peer call
    that starts after one of the peer's sends of this very exchange has completed.
    """
    n_calls = len(prog.calls)
    node = {("start", c): c for c in range(n_calls)}
    node.update({("end", c): n_calls + c for c in range(n_calls)})
    node.update({("barrier", g): 2 * n_calls + g for g in range(len(prog.groups))})
    events = sorted(node, key=node.__getitem__)
    successors: list[list[int]] = [[] for _ in events]
    for c, call in enumerate(prog.calls):
        for p in call.preds:
            successors[node["end", p]].append(node["start", c])
        successors[node["start", c]].append(node["end", c])
    for g, group in enumerate(prog.groups):
        for r in group.records:
            successors[node["start", prog.records[r].call]].append(node["barrier", g])
            successors[node["barrier", g]].append(node["end", prog.records[r].call])
    n_preds = [0] * len(events)
    for succ in successors:
        for s in succ:
            n_preds[s] += 1
    ready = [n for n in range(len(events)) if n_preds[n] == 0]
    order = []
    while ready:
        n = ready.pop()
        order.append(events[n])
        for s in successors[n]:
            n_preds[s] -= 1
            if n_preds[s] == 0:
                ready.append(s)
    if len(order) != len(events):
        stuck = sorted(
            {prog.calls[events[n][1]].stage for n in range(len(events)) if n_preds[n] and events[n][0] != "barrier"}
        )
        raise AssertionError(f"schedule deadlock: calls of stage(s) {stuck} wait on each other")
    return order


def _simulate(prog: _Program, weights: np.ndarray, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of every call, shape (calls, dp, steps), seconds from the step start.

    ``weights[r]`` is record r's duration (local) or transfer time (group member);
    ``gaps[c]`` the launch gap of call c.
    """
    start = np.zeros(gaps.shape)
    end = np.zeros(gaps.shape)
    barrier: dict[int, np.ndarray] = {}
    for kind, i in _event_order(prog):
        if kind == "start":
            preds = prog.calls[i].preds
            start[i] = (end[preds].max(axis=0) if preds else 0.0) + gaps[i]
        elif kind == "barrier":
            group = prog.groups[i]
            latest = start[[prog.records[r].call for r in group.records]].max(axis=0)
            barrier[i] = latest.max(axis=0, keepdims=True) if group.across_dp else latest
        else:
            ends = [
                barrier[prog.records[r].group] + weights[r] if prog.records[r].group >= 0 else start[i] + weights[r]
                for r in prog.calls[i].records
            ]
            end[i] = ends[0] if len(ends) == 1 else np.max(ends, axis=0)
    return start, end


# ---------------------------------------------------------------------------------------------
# Random inputs: durations with noise and injected causes, launch gaps
# ---------------------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, shape) -> np.ndarray:
    """Multiplicative noise with mean ~1 and CV DURATION_NOISE_CV, never far from 1."""
    return 1.0 + DURATION_NOISE_CV * np.clip(rng.standard_normal(shape), -NOISE_CLIP, NOISE_CLIP)


def _seqlen_multipliers(rng, cv: float, shape) -> np.ndarray:
    """Lognormal multipliers with mean 1 and coefficient of variation ``cv``."""
    if cv == 0:
        return np.ones(shape)
    sigma2 = np.log1p(cv * cv)
    return rng.lognormal(mean=-sigma2 / 2, sigma=np.sqrt(sigma2), size=shape)


def _record_weights(prog, layout, steps, rng, slow_workers, slow_stage, seqlen_cv, gc_pauses) -> np.ndarray:
    """Duration / transfer time of every record instance, shape (records, dp, steps)."""
    shape = (len(prog.records), layout.dp, steps)
    base = np.array([rec.base_s for rec in prog.records])
    weights = base[:, None, None] * _noise(rng, shape)

    worker_factor = np.ones((layout.pp, layout.dp))
    if slow_stage is not None:
        worker_factor[slow_stage[0], :] *= slow_stage[1]
    for dp_rank, stage, factor in slow_workers:
        worker_factor[stage, dp_rank] *= factor
    # one draw per (dp_rank, step, microbatch): a long sequence is long on every stage
    seqlen = _seqlen_multipliers(rng, seqlen_cv, (layout.dp, steps, layout.microbatches))
    compute = np.array([r for r, rec in enumerate(prog.records) if rec.is_compute])
    stage = np.array([prog.records[r].stage for r in compute])
    microbatch = np.array([prog.records[r].mb_id for r in compute])
    weights[compute] *= worker_factor[stage][:, :, None] * seqlen.transpose(2, 0, 1)[microbatch]

    gc_records = np.array([r for r, rec in enumerate(prog.records) if rec.optype == GC])
    for probability, seconds in gc_pauses:
        paused = rng.random((len(gc_records), layout.dp, steps)) < probability
        weights[gc_records] += paused * seconds
    return weights


def _slow_communication(prog, weights, slow_links, slow_collectives) -> None:
    """Multiply the transfer times of slowed p2p links and DP collectives in ``weights`` (in place)."""
    p2p = (FORWARD_SEND, FORWARD_RECV, BACKWARD_SEND, BACKWARD_RECV)
    for dp_rank, stage, factor in slow_links:
        # both directions of the link: the p2p pairs with one member on each of its two stages
        link = [
            r
            for group in prog.groups
            if not group.across_dp
            for r in group.records
            if prog.records[r].optype in p2p
            and sorted(prog.records[m].stage for m in group.records) == [stage, stage + 1]
        ]
        weights[link, dp_rank, :] *= factor
    collectives = (PARAMS_ALL_GATHER, GRADS_REDUCE_SCATTER, SEPARATE_GRADS_ALL_REDUCE)
    for stage, factor in slow_collectives:
        group = [r for r, rec in enumerate(prog.records) if rec.stage == stage and rec.optype in collectives]
        weights[group] *= factor


def _launch_gaps(prog, layout, steps, rng) -> np.ndarray:
    """Exponential CPU-side gap before each call; a stream's first call gets a start jitter."""
    mean = np.array([LAUNCH_GAP_S if call.preds else STREAM_START_JITTER_S for call in prog.calls])
    return rng.exponential(1.0, (len(prog.calls), layout.dp, steps)) * mean[:, None, None]


# ---------------------------------------------------------------------------------------------
# Output table
# ---------------------------------------------------------------------------------------------


def _row_order(prog: _Program, layout: _Layout, steps: int) -> np.ndarray:
    """Flat indices into (records, dp, steps) arrays, in the real traces' row order:
    by step, stage, dp_rank, optype, seq_id."""
    dp = layout.dp
    blocks = []
    for stage in range(layout.pp):
        recs = np.array(
            sorted(
                (r for r, rec in enumerate(prog.records) if rec.stage == stage),
                key=lambda r: (prog.records[r].optype, prog.records[r].seq_id),
            )
        )
        index = (
            recs[None, None, :] * (dp * steps) + np.arange(dp)[None, :, None] * steps + np.arange(steps)[:, None, None]
        )  # (steps, dp, records of stage)
        blocks.append(index.reshape(steps, -1))
    return np.concatenate(blocks, axis=1).ravel()


def _trace_table(prog, layout, steps, tp, start, end) -> pd.DataFrame:
    """The SPEC §1 table: each record gets its call's start and end; steps laid end to end."""
    call_of = np.array([rec.call for rec in prog.records])
    span = end.max(axis=(0, 1))  # per step, from its start at 0
    step_epoch = np.concatenate([[0.0], np.cumsum(span + STEP_GAP_S)[:-1]])

    order = _row_order(prog, layout, steps)
    per_record = layout.dp * steps
    rec = order // per_record
    dp_rank = (order // steps) % layout.dp
    step = order % steps
    rec_start = start[call_of].ravel()[order]
    rec_end = end[call_of].ravel()[order]

    def attr(name):
        return np.array([getattr(r, name) for r in prog.records])[rec]

    stage = attr("stage")
    codes = np.array([OPTYPES.index(r.optype) for r in prog.records])[rec]
    columns = {
        "dp_rank": dp_rank,
        "stage": stage,
        "rank": (stage * layout.dp + dp_rank) * tp,  # global rank, TP peers untraced
        "step": step,
        "optype": pd.Categorical.from_codes(codes, dtype=OPTYPE_DTYPE),
        "start_ts": rec_start + step_epoch[step],
        "duration": rec_end - rec_start,
        "seq_id": attr("seq_id"),
        "mc": attr("mc"),
        "gmc": attr("gmc"),
        "mb_id": attr("mb_id"),
    }
    return pd.DataFrame(
        {
            name: columns[name] if dtype is None else np.asarray(columns[name], dtype=dtype)
            for name, dtype in COLUMNS.items()
        }
    )


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _validate(dp, pp, vpp, microbatches, steps, tp, slow_workers, slow_stage, seqlen_cv, gc_pauses) -> None:
    """Raise SynthArgumentError naming the argument for anything the generator cannot honour."""
    for arg, value in (
        ("dp", dp),
        ("pp", pp),
        ("vpp", vpp),
        ("microbatches", microbatches),
        ("steps", steps),
        ("tp", tp),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SynthArgumentError(arg, f"{arg} must be a positive integer, got {value!r}")
    if vpp > 1 and pp < 2:
        raise SynthArgumentError("vpp", f"vpp {vpp} > 1 needs pp >= 2 (chunks interleave over stages)")
    if vpp > 1 and microbatches % pp:
        raise SynthArgumentError(
            "microbatches", f"microbatches ({microbatches}) must be a multiple of pp ({pp}) when vpp > 1"
        )
    _check_size(dp, pp, vpp, microbatches, steps)
    for dp_rank, stage, factor in slow_workers:
        if not (0 <= dp_rank < dp and 0 <= stage < pp):
            raise SynthArgumentError(
                "slow_workers", f"slow worker dp_rank {dp_rank}, stage {stage} is outside dp {dp} x pp {pp}"
            )
        if not factor > 0:
            raise SynthArgumentError("slow_workers", f"slow worker factor must be > 0, got {factor}")
    if slow_stage is not None:
        stage, factor = slow_stage
        if not 0 <= stage < pp:
            raise SynthArgumentError("slow_stage", f"slow stage {stage} is outside pp {pp}")
        if not factor > 0:
            raise SynthArgumentError("slow_stage", f"slow stage factor must be > 0, got {factor}")
    if not seqlen_cv >= 0:
        raise SynthArgumentError("seqlen_cv", f"seqlen_cv must be >= 0, got {seqlen_cv}")
    for probability, seconds in gc_pauses:
        if not 0 <= probability <= 1:
            raise SynthArgumentError("gc_pauses", f"gc pause probability must be in [0, 1], got {probability}")
        if not seconds >= 0:
            raise SynthArgumentError("gc_pauses", f"gc pause seconds must be >= 0, got {seconds}")


#: Memory one trace row costs while it is generated (measured: ~230 B, plus writing it).
BYTES_PER_ROW = 300


def max_rows(dp: int, pp: int, vpp: int, microbatches: int, steps: int) -> int:
    """An upper bound of the rows of a synthetic trace, from its sizes alone: per worker and step,
    two computes and up to four p2p records per microbatch and chunk, plus the step's tail and DP collectives."""
    per_worker_step = microbatches * vpp * (2 + (4 if pp > 1 else 0)) + 2 * vpp + 8
    return dp * pp * steps * per_worker_step


def _check_size(dp, pp, vpp, microbatches, steps) -> None:
    """Refuse up front a trace that cannot fit in this machine's memory (a SynthArgumentError on ``size``)."""
    rows = max_rows(dp, pp, vpp, microbatches, steps)
    memory = physical_memory() or BYTES_PER_ROW * 2**31  # unknown: bound by the int32 ids alone
    if rows * BYTES_PER_ROW > memory:
        raise SynthArgumentError(
            "size",
            f"dp {dp} x pp {pp} x vpp {vpp} with {microbatches} microbatches over {steps} steps makes up to "
            f"{rows:,} trace rows, about {rows * BYTES_PER_ROW / 1e9:,.0f} GB to generate; this machine has "
            f"{memory / 1e9:,.0f} GB",
        )


def _validate_communication(dp, pp, slow_links, slow_collectives) -> None:
    """Raise SynthArgumentError for a slowed link or collective the job does not have."""
    for dp_rank, stage, factor in slow_links:
        if not (0 <= dp_rank < dp and 0 <= stage < pp - 1):
            raise SynthArgumentError(
                "slow_links",
                f"slow link dp_rank {dp_rank}, stage {stage} -> {stage + 1} is not a p2p link of dp {dp} x pp {pp}",
            )
        if not factor > 0:
            raise SynthArgumentError("slow_links", f"slow link factor must be > 0, got {factor}")
    for stage, factor in slow_collectives:
        if dp < 2 or not 0 <= stage < pp:
            raise SynthArgumentError("slow_collectives", f"stage {stage} has no DP collectives in dp {dp} x pp {pp}")
        if not factor > 0:
            raise SynthArgumentError("slow_collectives", f"slow collective factor must be > 0, got {factor}")


def synthesize(
    *,
    dp: int,
    pp: int,
    vpp: int = 1,
    microbatches: int,
    steps: int,
    seed: int = 0,
    name: str = "synth",
    slow_workers=(),
    slow_stage=None,
    seqlen_cv: float = 0.0,
    gc_pauses=(),
    slow_links=(),
    slow_collectives=(),
    dp_overlap: bool = True,
    tp: int = 1,
) -> tuple[pd.DataFrame, dict]:
    """Generate a synthetic trace of a dp x pp (x vpp chunks) Megatron-style job.

    Parameters
    ----------
    dp, pp, vpp:
        Data-parallel ranks, pipeline stages, model chunks per stage. ``vpp >= 2`` gives the
        interleaved 1F1B schedule and needs ``pp >= 2`` and ``microbatches % pp == 0``.
    microbatches, steps:
        Microbatches per step (per dp rank) and number of training steps (numbered 0..steps-1).
    seed:
        The output is a pure function of all arguments; same seed, same table.
    name:
        ``trial_name`` of the metadata.
    slow_workers:
        ``(dp_rank, stage, factor)``: that worker's forward/backward compute durations x factor
        (entries for the same worker, and a slow stage, multiply).
    slow_stage:
        ``(stage, factor)``: every forward/backward compute on that stage x factor.
    seqlen_cv:
        Coefficient of variation of a lognormal multiplier (mean 1) of the forward and backward
        compute of each (dp_rank, step, microbatch), the same on every stage of that dp rank.
    gc_pauses:
        ``(probability, seconds)``: each worker-step independently, with that probability,
        gets ``seconds`` added to its ``gc`` op; several entries add up.
    slow_links:
        ``(dp_rank, stage, factor)``: the transfer times of the p2p link between ``stage`` and
        ``stage + 1`` in that dp rank's pipeline, both directions, x factor.
    slow_collectives:
        ``(stage, factor)``: the transfer times of that stage's DP collectives (params-all-gather,
        grads-reduce-scatter, separate-grads-all-reduce; needs dp >= 2) x factor.
    dp_overlap:
        With dp > 1: True reduces each chunk's gradients (``grads-reduce-scatter``) on a DP
        stream right after its last backward and ends the step with
        ``separate-grads-all-reduce``; False puts the reduce-scatters in the step's tail after
        layernorm/embedding, like the real traces. With dp == 1 there are no DP collectives.
    tp:
        Tensor-parallel size: only the metadata and the global ``rank`` (TP peers are untraced).

    Returns
    -------
    (trace, meta):
        ``trace`` has exactly the SPEC §1 columns (int32 ids, int64 step, categorical optype,
        float64 seconds), one row per op instance, ordered by step, stage, dp_rank, optype,
        seq_id; each step starts where the previous one ended plus a gap. Its times follow
        the SPEC §4 model exactly (launch delays and transfer times are >= 0), so graphwia's
        base simulation reproduces the observed step times. ``meta`` has the SPEC §1 fields.

    Raises
    ------
    ValueError
        for sizes or injected causes that do not fit the layout; the message names the argument.
    """
    slow_workers = [(int(d), int(s), float(f)) for d, s, f in slow_workers]
    slow_stage = None if slow_stage is None else (int(slow_stage[0]), float(slow_stage[1]))
    gc_pauses = [(float(p), float(sec)) for p, sec in gc_pauses]
    try:
        check_name(name, what="name", source=None)
    except UsageError as exc:
        raise SynthArgumentError("name", str(exc)) from None
    _validate(dp, pp, vpp, microbatches, steps, tp, slow_workers, slow_stage, seqlen_cv, gc_pauses)
    slow_links = [(int(d), int(s), float(f)) for d, s, f in slow_links]
    slow_collectives = [(int(s), float(f)) for s, f in slow_collectives]
    _validate_communication(dp, pp, slow_links, slow_collectives)

    layout = _Layout(dp=dp, pp=pp, vpp=vpp, microbatches=microbatches, dp_overlap=dp_overlap)
    prog = _build_program(layout)
    rng = np.random.default_rng(seed)
    weights = _record_weights(prog, layout, steps, rng, slow_workers, slow_stage, seqlen_cv, gc_pauses)
    _slow_communication(prog, weights, slow_links, slow_collectives)
    gaps = _launch_gaps(prog, layout, steps, rng)
    start, end = _simulate(prog, weights, gaps)
    trace = _trace_table(prog, layout, steps, tp, start, end)
    meta = {
        "trial_name": name,
        "run_id": 0,
        "dp_size": dp,
        "pp_size": pp,
        "tp_size": tp,
        "dsp_size": 1,
        "vpp_size": vpp,
        "world_size": dp * pp * tp,
    }
    return trace, meta


def write_synth(out_dir, name: str, **kwargs) -> tuple[Path, Path]:
    """Synthesize (``kwargs`` as for :func:`synthesize`) and write it with :func:`write_trace_files`."""
    trace, meta = synthesize(name=name, **kwargs)
    return write_trace_files(out_dir, name, trace, meta)


def write_trace_files(out_dir, name: str, trace: pd.DataFrame, meta: dict) -> tuple[Path, Path]:
    """Write ``out_dir/trace-NAME.parquet`` and ``out_dir/meta-NAME.yaml`` (NAME a valid name, so both
    lie inside ``out_dir``), both or neither. Returns the two paths."""
    import yaml

    from graphwia.utils.io import all_or_nothing, atomic_path, write_text

    check_name(name, what="name", source=str(out_dir))
    trace_path = Path(out_dir) / f"trace-{name}.parquet"
    meta_path = Path(out_dir) / f"meta-{name}.yaml"
    with all_or_nothing():
        with atomic_path(trace_path) as tmp:
            trace.to_parquet(tmp, index=False)
        write_text(meta_path, yaml.safe_dump(meta, sort_keys=False))
    return trace_path, meta_path
