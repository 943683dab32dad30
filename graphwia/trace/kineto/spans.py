"""When an op ran: the GPU-side span of a CPU range, NCCL kernels, and step membership.

On a GPU trace an annotated CPU range only *issues* work; the op ran when its kernels did. The
span of an op is, in order of preference:

1. ``kernels``: the union of the device activity (kernels, memcpy, memset) it launched: the
   ``cuda_runtime``/``cuda_driver`` launches on the op's thread inside its CPU range (when there
   are none, those of the process's other threads inside it that are no op's own thread, as the
   autograd engine's thread during a backward), linked to their device activity by correlation id,
   or by the ``ac2g`` flow when the activity carries none. A communication op counts only its NCCL
   kernels when it launched any (``ncclKernel_*`` and ``ncclDevKernel_*``), a compute op only the
   others;
2. ``gpu_user_annotation``: the GPU copy of the range (same External id), when no launch is linked;
3. ``cpu``: the CPU range itself (CPU-only work such as gloo collectives, gc).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from graphwia.optypes import ALL_OPTYPES, COMMUNICATION_OPTYPES
from graphwia.trace.kineto.events import CAT, DEVICE_CATS, LAUNCH_CATS, Events

__all__ = ["NCCL_KERNEL", "SOURCES", "FoundOps", "nccl_kernel", "nccl_names", "op_spans", "step_of"]

#: NCCL kernel names of both generations: ncclKernel_AllReduce_RING_LL_Sum_float, ncclDevKernel_SendRecv, ...
NCCL_KERNEL = re.compile(r"(?:void )?nccl(Dev)?Kernel_([A-Za-z]+)")
SOURCES = ("kernels", "gpu_user_annotation", "cpu")
_COMM_CODES = np.array([t in COMMUNICATION_OPTYPES for t in ALL_OPTYPES])
_NONE = np.iinfo(np.int64).max


def nccl_kernel(name: str) -> tuple[str, str] | None:
    """``(generation, collective)`` of an NCCL kernel name, e.g. ``("ncclDevKernel", "SendRecv")``; else None."""
    match = NCCL_KERNEL.match(name)
    if match is None:
        return None
    return ("ncclDevKernel" if match.group(1) else "ncclKernel"), match.group(2)


def nccl_names(events: Events) -> tuple[np.ndarray, dict[str, int]]:
    """Per name code: is it an NCCL kernel; and the count of NCCL kernels per generation/collective."""
    flags = np.zeros(len(events.names), dtype=bool)
    kinds = {}
    for code, name in enumerate(events.names):
        kind = nccl_kernel(name)
        if kind is not None:
            flags[code] = True
            kinds[code] = f"{kind[0]}_{kind[1]}"
    device = np.isin(events.cat, DEVICE_CATS)
    counts: dict[str, int] = {}
    if kinds:
        codes, n = np.unique(events.name[device & flags[events.name]], return_counts=True)
        for code, count in zip(codes.tolist(), n.tolist()):
            counts[kinds[code]] = counts.get(kinds[code], 0) + count
    return flags, counts


def op_spans(events: Events, rows: np.ndarray, optype: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, end (ns) and source code (into :data:`SOURCES`) of the ops at event ``rows``."""
    start = events.start[rows].copy()
    end = events.end[rows].copy()
    source = np.full(len(rows), SOURCES.index("cpu"), dtype=np.int8)
    device_op = np.isin(events.cat[rows], DEVICE_CATS + (CAT["gpu_user_annotation"],))
    source[device_op] = SOURCES.index("kernels")  # a rule matched device activity itself
    cpu_rows = np.flatnonzero(~device_op)
    if not len(cpu_rows):
        return start, end, source
    nccl, _ = nccl_names(events)
    launches = _Launches(events, nccl)
    if len(launches.rows):
        found = _from_launches(events, launches, rows, cpu_rows, optype, start, end)
        source[cpu_rows[found]] = SOURCES.index("kernels")
        cpu_rows = cpu_rows[~found]
    if len(cpu_rows):
        g_start, g_end = _gpu_annotations(events, events.external[rows[cpu_rows]])
        found = g_start != _NONE
        start[cpu_rows[found]], end[cpu_rows[found]] = g_start[found], g_end[found]
        source[cpu_rows[found]] = SOURCES.index("gpu_user_annotation")
    return start, end, source


def _from_launches(events: Events, launches: _Launches, rows, cpu_rows, optype, start, end) -> np.ndarray:
    """Fill start/end of the CPU-range ops at ``cpu_rows`` from their launches; True where found."""
    op_rows = rows[cpu_rows]
    thread, pid = events.thread[op_rows], events.pid[op_rows]
    comm = _COMM_CODES[optype[cpu_rows]]
    by_thread = launches.view(events.thread[launches.rows])
    lo, hi = by_thread.ranges(thread, start[cpu_rows], end[cpu_rows])
    k_start, k_end = by_thread.union(lo, hi, comm)
    # no launch on its own thread: those of its process's threads that run no op (autograd engine)
    none = np.flatnonzero(k_start == _NONE)
    free = ~np.isin(events.thread[launches.rows], np.unique(thread))
    if len(none) and free.any():
        view = launches.view(events.pid[launches.rows], keep=free)
        lo, hi = view.ranges(pid[none], start[cpu_rows[none]], end[cpu_rows[none]])
        k_start[none], k_end[none] = view.union(lo, hi, comm[none])
    found = k_start != _NONE
    start[cpu_rows[found]], end[cpu_rows[found]] = k_start[found], k_end[found]
    return found


class _Launches:
    """Launch events, each with the span of the device activity it launched, grouped by a key
    (thread, or process) and sorted by time within a group."""

    def __init__(self, events: Events, nccl: np.ndarray):
        self.rows = np.flatnonzero(np.isin(events.cat, LAUNCH_CATS))
        device = np.flatnonzero(np.isin(events.cat, DEVICE_CATS))
        corr = _device_correlations(events, device)
        known = corr >= 0
        device, corr = device[known], corr[known]
        order = np.argsort(corr, kind="stable")
        device, corr = device[order], corr[order]
        wanted = events.correlation[self.rows]
        linked = np.zeros(len(self.rows), dtype=bool)
        kernel = np.zeros(len(self.rows), dtype=np.int64)
        if len(corr):
            at = np.minimum(np.searchsorted(corr, wanted), len(corr) - 1)
            linked = (corr[at] == wanted) & (wanted >= 0)
            kernel = device[at]
        self.k_start = np.where(linked, events.start[kernel], _NONE)
        self.k_end = np.where(linked, events.end[kernel], -_NONE)
        self.is_nccl = linked & nccl[events.name[kernel]]
        self.ts = events.start[self.rows]

    def view(self, group: np.ndarray, keep: np.ndarray | None = None) -> _LaunchView:
        """Launches (those with ``keep``) grouped by ``group`` (one value per launch), by time in a group."""
        index = np.arange(len(self.rows)) if keep is None else np.flatnonzero(keep)
        index = index[np.lexsort((self.ts[index], group[index]))]
        return _LaunchView(group[index], self.ts[index], self.k_start[index], self.k_end[index], self.is_nccl[index])


class _LaunchView:
    def __init__(self, group, ts, k_start, k_end, is_nccl):
        self.group, self.ts, self.k_start, self.k_end, self.is_nccl = group, ts, k_start, k_end, is_nccl
        self.keys, self.first = np.unique(group, return_index=True)
        self.last = np.append(self.first[1:], len(group))

    def ranges(self, group: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions [lo, hi) of the launches of ``group`` with start <= ts <= end, per range."""
        lo = np.zeros(len(group), dtype=np.int64)
        hi = np.zeros(len(group), dtype=np.int64)
        for key, a, b in zip(self.keys.tolist(), self.first.tolist(), self.last.tolist()):  # per thread, not per op
            mine = np.flatnonzero(group == key)
            lo[mine] = a + np.searchsorted(self.ts[a:b], start[mine], side="left")
            hi[mine] = a + np.searchsorted(self.ts[a:b], end[mine], side="right")
        return lo, hi

    def union(self, lo: np.ndarray, hi: np.ndarray, comm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Span of the device activity of launches [lo, hi) of each op (NCCL kernels only for a
        communication op that launched any, the other activity for the rest); (_NONE, −_NONE) if none."""
        start = np.full(len(lo), _NONE, dtype=np.int64)
        end = np.full(len(lo), -_NONE, dtype=np.int64)
        takes_nccl = comm & _range_any(self.is_nccl, lo, hi)
        for nccl_side, ops in ((True, takes_nccl), (False, ~takes_nccl)):
            use = self.is_nccl if nccl_side else ~self.is_nccl
            s = _range_reduce(np.where(use, self.k_start, _NONE), lo, hi, np.minimum, _NONE)
            e = _range_reduce(np.where(use, self.k_end, -_NONE), lo, hi, np.maximum, -_NONE)
            start[ops], end[ops] = s[ops], e[ops]
        return start, end


def _device_correlations(events: Events, device: np.ndarray) -> np.ndarray:
    """Correlation id of device events: their own, else the id of the ``ac2g`` flow ending on them
    (a flow end binds to the activity on its stream that encloses its time)."""
    corr = events.correlation[device].copy()
    missing = np.flatnonzero(corr < 0)
    if not len(missing):
        return corr
    flows = events.flows  # read on first use: Kineto gives kernels their correlation id
    if not len(flows["id"]):
        return corr
    rows = device[missing]
    for thread in np.unique(events.thread[rows]).tolist():  # per stream, not per event
        mine = missing[events.thread[rows] == thread]
        order = mine[np.argsort(events.start[device[mine]], kind="stable")]
        flow = np.flatnonzero(flows["thread"] == thread)
        at = np.searchsorted(events.start[device[order]], flows["ts"][flow], side="right") - 1
        ok = at >= 0
        ok[ok] = events.end[device[order[at[ok]]]] >= flows["ts"][flow[ok]]
        corr[order[at[ok]]] = flows["id"][flow[ok]]
    return corr


def _range_reduce(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, ufunc, empty) -> np.ndarray:
    """ufunc-reduction of values[lo:hi] for every range (``empty`` for an empty one), without a loop."""
    out = np.full(len(lo), empty, dtype=values.dtype)
    length = hi - lo
    nonempty = np.flatnonzero(length > 0)
    if not len(nonempty):
        return out
    lengths = length[nonempty]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    index = np.repeat(lo[nonempty] - offsets, lengths) + np.arange(int(lengths.sum()))
    out[nonempty] = ufunc.reduceat(values[index], offsets)
    return out


def _range_any(flags: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    counts = np.concatenate([[0], np.cumsum(flags)])
    return counts[hi] - counts[lo] > 0


def _gpu_annotations(events: Events, external: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Span of the ``gpu_user_annotation`` events sharing each External id (_NONE where none does)."""
    rows = np.flatnonzero(events.cat == CAT["gpu_user_annotation"])
    start = np.full(len(external), _NONE, dtype=np.int64)
    end = np.full(len(external), -_NONE, dtype=np.int64)
    ids = events.external[rows]
    rows = rows[ids >= 0]
    if not len(rows):
        return start, end
    ids, inverse = np.unique(ids[ids >= 0], return_inverse=True)
    lo = np.full(len(ids), _NONE, dtype=np.int64)
    hi = np.full(len(ids), -_NONE, dtype=np.int64)
    np.minimum.at(lo, inverse, events.start[rows])
    np.maximum.at(hi, inverse, events.end[rows])
    at = np.minimum(np.searchsorted(ids, external), len(ids) - 1)
    hit = (ids[at] == external) & (external >= 0)
    start[hit], end[hit] = lo[at[hit]], hi[at[hit]]
    return start, end


def step_of(steps: tuple[np.ndarray, np.ndarray, np.ndarray], ts: np.ndarray) -> np.ndarray:
    """Number of the ``ProfilerStep#N`` range holding each CPU time, −1 when none does."""
    number, start, end = steps
    if not len(number):
        return np.full(len(ts), -1, dtype=np.int64)
    at = np.searchsorted(start, ts, side="right") - 1
    ok = at >= 0
    inside = np.zeros(len(ts), dtype=bool)
    inside[ok] = ts[ok] < end[at[ok]]
    return np.where(inside, number[np.maximum(at, 0)], -1)


@dataclass
class FoundOps:
    """Ops found in one file: optype code, mb, chunk (−1: none), span (ns), the CPU time that
    places it in a step, and the span's source (codes into spans.SOURCES)."""

    optype: np.ndarray
    mb: np.ndarray
    chunk: np.ndarray
    start: np.ndarray
    end: np.ndarray
    cpu_start: np.ndarray
    source: np.ndarray
    method: str
    detail: dict = field(default_factory=dict)
