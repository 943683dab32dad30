"""One rank's file → its ops: the per-file half of the import, run in parallel across ranks.

:func:`read_rank` reads a trace file (:mod:`~graphwia.trace.kineto.events`), finds its ops (the
convention or a mapping file, :mod:`~graphwia.trace.kineto.classify`; Python stacks when it has
no annotations, :mod:`~graphwia.trace.kineto.stacks`), gives each its span
(:mod:`~graphwia.trace.kineto.spans`) and its ``ProfilerStep#N``, and returns a small
:class:`RankOps` (numpy columns, picklable) that the job assembly combines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphwia.errors import TraceError
from graphwia.optypes import ALL_OPTYPES, DP_COLLECTIVES, P2P_OPTYPES
from graphwia.trace.kineto.classify import OpMapping, classify, profiler_steps
from graphwia.trace.kineto.events import CAT, Events, message_bytes, read_events
from graphwia.trace.kineto.spans import SOURCES, FoundOps, nccl_names, op_spans, step_of
from graphwia.trace.kineto.topology import RankInfo, rank_info

__all__ = ["MESSAGE_KINDS", "RankOps", "read_rank"]

#: The kinds of message whose sizes an import carries (the metadata field each gives) and their optypes.
MESSAGE_KINDS = {"activation_bytes": P2P_OPTYPES, "grad_bytes": DP_COLLECTIVES}


@dataclass
class RankOps:
    """The ops of one rank's file, by step, with what the file says about its process.

    ``steps`` are the ``ProfilerStep`` numbers present in the file, ``step_start``/``step_end`` the
    span (ns) of each; ``counts["message_bytes"]`` maps each of :data:`MESSAGE_KINDS` to
    ``{bytes: number of record_param_comms ops}`` inside its ops' ranges.
    """

    info: RankInfo
    steps: np.ndarray
    step_start: np.ndarray
    step_end: np.ndarray
    optype: np.ndarray
    mb: np.ndarray
    chunk: np.ndarray
    step: np.ndarray
    start: np.ndarray
    end: np.ndarray
    source: np.ndarray
    method: str
    counts: dict = field(default_factory=dict)


def read_rank(path: str | Path, *, mapping: OpMapping | None = None) -> RankOps:
    """The ops of one rank's trace file; a one-line TraceError names the file when it has none."""
    path = Path(path)
    events = read_events(path)
    info = rank_info(path, events.distributed, events.host)
    steps = profiler_steps(events)
    if not len(steps[0]):
        raise TraceError(
            f"{path}: no ProfilerStep#N ranges, so no training steps (profile with a "
            f"torch.profiler schedule and call prof.step() once per step)"
        )
    found = _annotated(events, mapping)
    if found is None:
        from graphwia.trace.kineto.stacks import infer_from_stacks

        if not (events.cat == CAT["python_function"]).any():
            raise TraceError(
                f"{path}: no op annotations (record_function ranges named like 'forward-compute "
                f"mb=0', see graphwia.record) and no Python stacks to infer ops from (with_stack=True); "
                f"annotate the training loop, or name its ops in a mapping file"
            )
        found = infer_from_stacks(events, steps)
    step = step_of(steps, found.cpu_start)
    inside = step >= 0
    _, nccl = nccl_names(events)
    counts = {
        "bytes": events.size,
        "events": events.counts["events"],
        "ops": int(inside.sum()),
        "outside_steps": int((~inside).sum()),
        "sources": {SOURCES[code]: int(n) for code, n in zip(*np.unique(found.source[inside], return_counts=True))},
        "nccl_kernels": nccl,
        "record_param_comms": len(events.comms),
        **found.detail,
    }
    numbers, first = np.unique(steps[0], return_inverse=True)
    step_start = np.full(len(numbers), np.iinfo(np.int64).max, dtype=np.int64)
    step_end = np.full(len(numbers), np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(step_start, first, steps[1])
    np.maximum.at(step_end, first, steps[2])
    return RankOps(
        info=info,
        steps=numbers,
        step_start=step_start,
        step_end=step_end,
        optype=found.optype[inside],
        mb=found.mb[inside],
        chunk=found.chunk[inside],
        step=step[inside],
        start=found.start[inside],
        end=found.end[inside],
        source=found.source[inside],
        method=found.method,
        counts=counts,
    )


def _annotated(events: Events, mapping: OpMapping | None) -> FoundOps | None:
    """Ops named by the convention or the mapping rules, with their spans; None when there are none."""
    classified = classify(events, mapping)
    rows = classified.index
    if not len(rows):
        return None
    start, end, source = op_spans(events, rows, classified.optype)
    method = (
        "annotations"
        if not classified.by_rule["mapping"]
        else "mapping file + annotations"
        if classified.by_rule["convention"]
        else "mapping file"
    )
    return FoundOps(
        optype=classified.optype,
        mb=classified.mb,
        chunk=classified.chunk,
        start=start,
        end=end,
        cpu_start=events.start[rows],
        source=source,
        method=method,
        detail=_comm_details(events, rows, classified.optype),
    )


def _comm_details(events: Events, rows: np.ndarray, optype: np.ndarray) -> dict[str, dict]:
    """What the record_param_comms ops inside the ops' ranges say (the op range starting last before a
    comms op on its thread, when it still runs then): ``groups``, for each optype the ``collective on
    group`` of its comms ops; ``message_bytes``, for each kind of :data:`MESSAGE_KINDS` the sizes of
    its comms ops (bytes → count)."""
    sizes: dict[str, dict[int, int]] = {}
    if not events.comms:
        return {"groups": {}, "message_bytes": sizes}
    kind_of = {name: kind for kind, names in MESSAGE_KINDS.items() for name in names}
    comm = np.fromiter(events.comms, np.int64, len(events.comms))
    thread, start, end = events.thread[rows], events.start[rows], events.end[rows]
    order = np.lexsort((start, thread))
    key_thread, key_start = thread[order], start[order]
    seen: dict[str, set] = {}
    for t in np.unique(events.thread[comm]).tolist():  # per thread, not per comms op
        lo, hi = np.searchsorted(key_thread, [t, t + 1])
        mine = comm[events.thread[comm] == t]
        at = lo + np.searchsorted(key_start[lo:hi], events.start[mine], side="right") - 1
        ok = at >= lo
        ok[ok] = end[order[at[ok]]] >= events.start[mine[ok]]
        for index, op in zip(mine[ok].tolist(), order[at[ok]].tolist()):
            args = events.comms[index]
            what = f"{args.get('collective') or '?'} on {args.get('group_desc') or '?'}"
            name = ALL_OPTYPES[optype[op]]
            seen.setdefault(name, set()).add(what)
            size = message_bytes(args)
            if size is not None and name in kind_of:
                counts = sizes.setdefault(kind_of[name], {})
                counts[size] = counts.get(size, 0) + 1
    return {"groups": {k: sorted(v) for k, v in sorted(seen.items())}, "message_bytes": sizes}
