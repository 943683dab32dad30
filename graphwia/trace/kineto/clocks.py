"""Clock offsets between hosts, estimated from point-to-point causality.

Ranks on one host share its clock; hosts' clocks may differ. A recv cannot end before its send
started, so each matched send (host A) → recv (host B) gives ``off_B − off_A ≥ send start −
recv end``. Per pair of hosts the bounds of both directions leave an interval for the offset;
when 0 lies in it the clocks are taken as agreeing, otherwise its midpoint is used. Offsets are
chained from the host of the lowest rank (offset 0) along these pairs, then raised where a
bound is still violated. :func:`estimate_offsets` returns the offsets and what it found.

Sends and recvs are paired as the SPEC pairs them: per (dp_rank, step), a forward-send of
global chunk g on stage s with the forward-recv of chunk g + 1 on the next stage carrying the
same microbatch (backward: chunk g − 1, previous stage); without microbatch numbers, the k-th
send with the k-th recv when both sides have as many (without virtual stages, never from the last
stage forward or from the first backward).

Ranks of one host share its clock, so no offset can explain a recv that ends before its send on
the same host started: beyond :data:`CAUSALITY_TOLERANCE_NS` (timer granularity and the
conversion of GPU timestamps to the host's clock, far below the length of any op of another run)
the report's :attr:`ClockReport.same_host_violation` names the worst such pair; the import takes
it for files of different jobs or runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphwia import optypes as T

__all__ = ["CAUSALITY_TOLERANCE_NS", "ClockReport", "estimate_offsets", "p2p_pairs"]

#: How long (ns) a recv may seem to end before its send on the same host started: 0.1 ms.
CAUSALITY_TOLERANCE_NS = 100_000

_DIRECTIONS = (
    (T.OPTYPE_CODE[T.FORWARD_SEND], T.OPTYPE_CODE[T.FORWARD_RECV], +1),
    (T.OPTYPE_CODE[T.BACKWARD_SEND], T.OPTYPE_CODE[T.BACKWARD_RECV], -1),
)


@dataclass
class ClockReport:
    """Offsets applied (ns, per host name), p2p pairs checked, and violations before/after.

    ``same_host_violation`` is (send row, recv row, ns the recv ended before the send started, number
    of such pairs) for the worst pair of one host beyond :data:`CAUSALITY_TOLERANCE_NS`, else None.
    """

    offsets: dict[str, int]
    pairs: int
    violations_before: int
    violations_after: int
    worst_before_ns: int
    same_host_violation: tuple[int, int, int, int] | None = None


def p2p_pairs(ops: dict[str, np.ndarray], pp: int, vpp: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (send, recv) of matched p2p pairs in the op columns ``ops``.

    ``ops`` holds dp_rank, stage, step, optype, mb, chunk (−1: none) as arrays.
    """
    sends, recvs = [], []
    for send_code, recv_code, delta in _DIRECTIONS:
        s_rows = np.flatnonzero(ops["optype"] == send_code)
        r_rows = np.flatnonzero(ops["optype"] == recv_code)
        if not len(s_rows) or not len(r_rows):
            continue
        gmc = ops["stage"][s_rows] + np.maximum(ops["chunk"][s_rows], 0) * pp + delta
        inside = (gmc >= 0) & (gmc < pp * vpp)
        s_rows, gmc = s_rows[inside], gmc[inside]
        peer_stage, peer_chunk = gmc % pp, gmc // pp
        with_mb = ops["mb"][s_rows] >= 0
        keyed_s, keyed_r = _keys(
            (ops["dp_rank"][s_rows], ops["dp_rank"][r_rows]),
            (peer_stage, ops["stage"][r_rows]),
            (ops["step"][s_rows], ops["step"][r_rows]),
            (peer_chunk, np.maximum(ops["chunk"][r_rows], 0)),
            (ops["mb"][s_rows], ops["mb"][r_rows]),
        )
        order = np.argsort(keyed_r, kind="stable")
        at = np.minimum(np.searchsorted(keyed_r[order], keyed_s), len(order) - 1)
        hit = with_mb & (keyed_r[order][at] == keyed_s) & (ops["mb"][r_rows][order][at] >= 0)
        sends.append(s_rows[hit])
        recvs.append(r_rows[order][at][hit])
        s_left, r_left = s_rows[~with_mb], r_rows[ops["mb"][r_rows] < 0]
        if vpp == 1:  # no chunk wraps around to the first or last stage
            s_left = s_left[(ops["stage"][s_left] + delta >= 0) & (ops["stage"][s_left] + delta < pp)]
        if len(s_left) and len(r_left):
            s2, r2 = _pair_by_order(ops, s_left, r_left, pp, delta)
            sends.append(s2)
            recvs.append(r2)
    if not sends:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(sends), np.concatenate(recvs)


def _keys(*columns: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One integer per row for two tables with the same key columns (pairs of arrays): equal keys,
    equal integers."""
    left = len(columns[0][0])
    stacked = np.stack([np.concatenate(pair).astype(np.int64) for pair in columns], axis=1)
    _, ids = np.unique(stacked, axis=0, return_inverse=True)
    ids = ids.ravel()
    return ids[:left], ids[left:]


def _pair_by_order(ops, sends: np.ndarray, recvs: np.ndarray, pp: int, delta: int):
    """k-th send of a (dp_rank, stage, step) with the k-th recv of its peer stage, equal counts only."""
    out_s, out_r = [], []
    s_group, r_group = _keys(
        (ops["dp_rank"][sends], ops["dp_rank"][recvs]),
        ((ops["stage"][sends] + delta) % pp, ops["stage"][recvs]),
        (ops["step"][sends], ops["step"][recvs]),
    )
    s_order = np.lexsort((ops["start"][sends], s_group))
    r_order = np.lexsort((ops["start"][recvs], r_group))
    s_keys, s_first, s_count = np.unique(s_group[s_order], return_index=True, return_counts=True)
    r_keys, r_first, r_count = np.unique(r_group[r_order], return_index=True, return_counts=True)
    common, si, ri = np.intersect1d(s_keys, r_keys, return_indices=True)
    equal = s_count[si] == r_count[ri]
    for a, b, n in zip(s_first[si][equal], r_first[ri][equal], s_count[si][equal]):
        out_s.append(sends[s_order[a : a + n]])
        out_r.append(recvs[r_order[b : b + n]])
    if not out_s:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_s), np.concatenate(out_r)


def estimate_offsets(ops: dict[str, np.ndarray], hosts: list[str], reference: int, pp: int, vpp: int) -> ClockReport:
    """Clock offset of every host (``ops["host"]`` codes into ``hosts``), host ``reference`` at 0."""
    send, recv = p2p_pairs(ops, pp, vpp)
    bound = ops["start"][send] - ops["end"][recv]  # off[host recv] − off[host send] ≥ bound
    a, b = ops["host"][send], ops["host"][recv]
    n = len(hosts)
    violations = int((bound > 0).sum())
    worst = int(bound.max()) if len(bound) else 0
    offsets = np.zeros(n, dtype=np.int64)
    if n > 1 and violations:
        lower = np.full((n, n), np.iinfo(np.int64).min)  # lower[a, b]: off_b − off_a ≥ lower
        np.maximum.at(lower, (a, b), bound)
        offsets = _chain(lower, reference)
    after = int((bound - (offsets[b] - offsets[a]) > 0).sum())
    same_host = np.flatnonzero((a == b) & (bound > CAUSALITY_TOLERANCE_NS))
    worst_same = int(same_host[np.argmax(bound[same_host])]) if len(same_host) else -1
    return ClockReport(
        offsets={hosts[h]: int(offsets[h]) for h in range(n)},
        pairs=len(send),
        violations_before=violations,
        violations_after=after,
        worst_before_ns=max(worst, 0),
        same_host_violation=(
            (int(send[worst_same]), int(recv[worst_same]), int(bound[worst_same]), len(same_host))
            if worst_same >= 0
            else None
        ),
    )


def _chain(lower: np.ndarray, reference: int) -> np.ndarray:
    """Offsets from pairwise bounds: 0 where an interval holds 0, else its midpoint, chained
    breadth-first from ``reference``; then raised until every lower bound holds (or n rounds)."""
    n = len(lower)
    none = np.iinfo(np.int64).min
    offsets = np.zeros(n, dtype=np.int64)
    placed = {reference}
    frontier = [reference]
    while frontier:
        a = frontier.pop(0)
        for b in range(n):
            if b in placed or (lower[a, b] == none and lower[b, a] == none):
                continue
            lo = lower[a, b] if lower[a, b] != none else None  # off_b − off_a ≥ lo
            hi = -lower[b, a] if lower[b, a] != none else None  # off_b − off_a ≤ hi
            if (lo is None or lo <= 0) and (hi is None or hi >= 0):
                diff = 0
            elif lo is not None and hi is not None:
                diff = (lo + hi) // 2
            elif lo is not None:
                diff = lo
            else:
                assert hi is not None  # a pair without either bound was skipped
                diff = hi
            offsets[b] = offsets[a] + diff
            placed.add(b)
            frontier.append(b)
    bound = lower != none
    for _ in range(n):  # Bellman-Ford rounds on the lower bounds, all host pairs at once
        needed = np.where(bound, offsets[:, None] + np.where(bound, lower, 0), none).max(axis=0)
        raised = np.maximum(offsets, needed)
        if (raised == offsets).all():
            break
        offsets = raised
    return offsets - offsets[reference]
