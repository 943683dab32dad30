"""Chrome trace-event timelines that Perfetto opens (SPEC §6).

One complete (``"ph": "X"``) event per op instance, times in microseconds,
process = DP rank, one thread per (rank, category), steps laid one after
another with a gap of :data:`STEP_GAP` × the longest step. Optional overlays
mark a set of ops and join consecutive ones with flow arrows (critical paths).

Two ways to the same events: :func:`timeline_events` returns them as dicts
(to inspect or test), :func:`timeline_json` as the text ``json.dumps`` makes of
that list, built column-wise from the numpy op table. Building and dumping a
dict and a dozen boxed numbers per op costs several times more than the text
itself (AR, 117k ops: 1.1 s + 1.2 s against 0.07 s), so writers use the text.
:func:`write_bars_timeline` streams it: :func:`timeline_chunks` formats
:data:`CHUNK_OPS` events at a time straight into the gzip stream, so writing a
timeline costs a few MB of memory beyond the times it draws, whatever the trace's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphwia.errors import OutputError
from graphwia.model.dag import Dag
from graphwia.optypes import TIMELINE_CATEGORY
from graphwia.utils.arrow import index_array, text_array, to_numpy
from graphwia.utils.io import write_gzip, write_json

__all__ = [
    "CATEGORIES",
    "CHUNK_OPS",
    "GZIP_LEVEL",
    "STEP_GAP",
    "US",
    "drawn_start",
    "timeline_chunks",
    "timeline_events",
    "timeline_json",
    "write_bars_timeline",
    "write_timeline",
    "write_timeline_json",
]

CATEGORIES = ("compute", "pp-comm", "tp-comm", "dp-comm", "misc")
STEP_GAP = 0.1
US = 1e6
#: gzip level of :func:`write_timeline_json`. Measured on AR's two timelines (24 MB of JSON each):
#: level 6 takes 0.31 s a timeline for 4.02 MB in all, level 3 0.12 s for 4.67 MB (+16%), level 1
#: 0.09 s for 5.78 MB (+44%). At 6, compressing would be 3/4 of writing a timeline.
GZIP_LEVEL = 3
#: Events formatted at a time by :func:`timeline_chunks` (~200 bytes of text each).
CHUNK_OPS = 1 << 16


def drawn_start(dag: Dag, start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Where an op's bar begins: its start, or for a group member end − transfer time."""
    member = dag.table["barrier"] >= 0
    return np.where(member, end - weight, start)


def _longest(end: np.ndarray) -> float:
    """The latest end of an op relative to its step's start: steps are laid this much (plus the gap) apart."""
    return float(end.max()) if end.size else 0.0


def timeline_events(
    dag: Dag,
    start: np.ndarray,
    end: np.ndarray,
    *,
    marked: np.ndarray | None = None,
    flows: Sequence[Sequence[int] | np.ndarray] = (),
) -> list[dict]:
    """Trace events for bars from ``start`` to ``end`` (seconds, relative to each step).

    ``marked``: boolean mask of ops drawn as critical (category ``critical``,
    name suffixed with ``*``). ``flows``: chains of op ids joined by arrows.
    """
    bars = _bars(dag, start, end, marked, slice(None))
    names = bars.names
    columns = zip(
        bars.code.tolist(),
        bars.pid.tolist(),
        bars.tid.tolist(),
        bars.ts.tolist(),
        bars.dur.tolist(),
        bars.step.tolist(),
        bars.chunk.tolist(),
        bars.mb.tolist(),
        bars.seq.tolist(),
        bars.crit.tolist(),
    )
    events = [
        {
            "name": names[code] + ("*" if crit else ""),
            "cat": "critical" if crit else names[code],
            "pid": p,
            "tid": t,
            "ts": s,
            "dur": d,
            "ph": "X",
            "args": {"step": step, "model_chunk": _or_none(chunk), "mb_id": _or_none(mb), "seq_id": seq},
        }
        for code, p, t, s, d, step, chunk, mb, seq, crit in columns
    ]
    return events + _metadata(dag) + _flow_events(flows, dag, start, end, marked)


def timeline_json(
    dag: Dag,
    start: np.ndarray,
    end: np.ndarray,
    *,
    marked: np.ndarray | None = None,
    flows: Sequence[Sequence[int] | np.ndarray] = (),
) -> bytes:
    """``json.dumps(timeline_events(dag, start, end, marked=marked, flows=flows), allow_nan=True)``
    as UTF-8, byte for byte, built without the events.

    The complete events are formatted column by column with pyarrow's string
    kernels (see :func:`_bars_json`); the few process, thread and flow events
    go through json.
    """
    return b"".join(timeline_chunks(dag, start, end, marked=marked, flows=flows))


def timeline_chunks(
    dag: Dag,
    start: np.ndarray,
    end: np.ndarray,
    *,
    marked: np.ndarray | None = None,
    flows: Sequence[Sequence[int] | np.ndarray] = (),
) -> Iterator[bytes]:
    """The text of :func:`timeline_json` in pieces, each holding at most :data:`CHUNK_OPS` events."""
    extra = json.dumps(_metadata(dag) + _flow_events(flows, dag, start, end, marked), allow_nan=True)[1:-1].encode()
    yield b"["
    longest = _longest(end)
    for lo in range(0, len(start), CHUNK_OPS):
        yield _bars_json(_bars(dag, start, end, marked, slice(lo, lo + CHUNK_OPS), longest))
        yield b", "  # after every event; extra holds the process names whenever there are ops
    yield extra + b"]"


def write_bars_timeline(
    path: str | Path,
    dag: Dag,
    start: np.ndarray,
    end: np.ndarray,
    *,
    marked: np.ndarray | None = None,
    flows: Sequence[Sequence[int] | np.ndarray] = (),
) -> Path:
    """Write the timeline of bars from ``start`` to ``end`` (see :func:`timeline_events`), streamed, atomically.

    Times must be finite, also in microseconds with the steps laid end to end (an
    :class:`~graphwia.errors.OutputError` says which are not): the file is strict JSON.
    """
    bad = ~(np.isfinite(start) & np.isfinite(end))
    if bad.any():
        from graphwia.trace.optable import describe_op

        raise OutputError(
            f"{path}: cannot draw {int(bad.sum())} op(s) without a finite time, first: "
            f"{describe_op(dag.table, int(np.argmax(bad)))}"
        )
    if len(start):
        with np.errstate(over="ignore"):
            extent = (
                max(np.abs(start).max(), np.abs(end).max()) + len(dag.steps) * _longest(end) * (1 + STEP_GAP)
            ) * US
        if not np.isfinite(extent):
            raise OutputError(
                f"{path}: cannot draw times up to {_longest(end):.3g} s: in microseconds, laid step "
                "after step, they overflow"
            )
    return write_timeline_json(path, timeline_chunks(dag, start, end, marked=marked, flows=flows))


def write_timeline(path: str | Path, events: list[dict]) -> Path:
    """Write events as a gzip-compressed JSON array, atomically."""
    return write_json(path, events, indent=None, compress=True)


def write_timeline_json(path: str | Path, text: bytes | Iterable[bytes]) -> Path:
    """Write the text of :func:`timeline_json` (or its :func:`timeline_chunks`) gzip-compressed
    (at :data:`GZIP_LEVEL`), atomically.

    The file decompresses to the same bytes as one :func:`write_timeline` writes of the same events.
    """
    return write_gzip(path, text, level=GZIP_LEVEL)


@dataclass(frozen=True)
class _Bars:
    """The complete events of a timeline as columns, one entry per op."""

    names: tuple[str, ...]  # optype name by code
    code: np.ndarray
    crit: np.ndarray
    pid: np.ndarray
    tid: np.ndarray
    ts: np.ndarray
    dur: np.ndarray
    step: np.ndarray
    chunk: np.ndarray
    mb: np.ndarray
    seq: np.ndarray


def _bars(
    dag: Dag,
    start: np.ndarray,
    end: np.ndarray,
    marked: np.ndarray | None,
    rows: slice | np.ndarray,
    longest: float | None = None,
) -> _Bars:
    """Columns of the complete events of ops ``rows``: times in µs, steps laid end to end with a gap of
    :data:`STEP_GAP` × the longest (``longest``: :func:`_longest` of ``end``, if known), one thread per
    (rank, category)."""
    table = dag.table
    # An op without optype is drawn as the pandas path did: named "nan", in category misc.
    names = tuple(table.categories["optype"]) + ("nan",)
    cat_index = np.array([CATEGORIES.index(TIMELINE_CATEGORY.get(name, "misc")) for name in names])
    code = table["optype"][rows].astype(np.intp) % len(names)  # −1 → the last name
    ops = np.arange(*rows.indices(len(table))) if isinstance(rows, slice) else rows
    step_index = ops // max(dag.ops_per_step, 1)  # ops are laid out step by step
    longest = _longest(end) if longest is None else longest
    start, end = start[rows], end[rows]
    ts = (start + step_index * longest * (1 + STEP_GAP)) * US
    dur = np.maximum(end - start, 0.0) * US
    tid = table["rank"][rows].astype(np.int64) * len(CATEGORIES) + cat_index[code]
    crit = np.zeros(len(code), dtype=bool) if marked is None else np.asarray(marked, dtype=bool)[rows]
    return _Bars(
        names,
        code,
        crit,
        table["dp_rank"][rows],
        tid,
        ts,
        dur,
        table["step"][rows],
        table["chunk"][rows],
        table["mb_id"][rows],
        table["seq_id"][rows],
    )


def _bars_json(bars: _Bars) -> bytes:
    """The complete events as json writes them, separated by ", ", without the enclosing brackets.

    Each column becomes an arrow string array (with the text up to the next
    column appended); one element-wise join lays the events out one after
    another in a single buffer. Large strings (64-bit offsets): a timeline can
    pass 2 GiB.
    """
    import pyarrow.compute as pc

    if not len(bars.code):
        return b""
    dur_key, args_key = (text_array([text])[0] for text in (', "dur": ', ', "ph": "X", "args": {"step": '))
    events = pc.binary_join_element_wise(
        _take_text(_heads(bars.names), bars.code * 2 + bars.crit),
        _int_json(bars.pid, ', "tid": '),
        _int_json(bars.tid, ', "ts": '),
        _float_json(bars.ts),
        dur_key,
        _float_json(bars.dur),
        args_key,
        _int_json(bars.step, ', "model_chunk": '),
        _int_json(bars.chunk, ', "mb_id": ', nullable=True),
        _int_json(bars.mb, ', "seq_id": ', nullable=True),
        _int_json(bars.seq, "}}, "),
        text_array([""])[0],
    )
    offsets = np.frombuffer(events.buffers()[1], dtype=np.int64, count=events.offset + len(events) + 1)
    first, last = int(offsets[events.offset]), int(offsets[-1])
    # no ", " after the last event; copied out (one memcpy of the chunk) so chunks are bytes, as write_gzip takes
    return memoryview(events.buffers()[2])[first : last - 2].tobytes()


def _heads(names: tuple[str, ...]) -> list[str]:
    """Opening of an event up to its pid, at 2 × optype code + marked."""

    def head(name: str, crit: bool) -> str:
        shown, category = (name + "*", "critical") if crit else (name, name)
        return f'{{"name": {json.dumps(shown)}, "cat": {json.dumps(category)}, "pid": '

    return [head(name, crit) for name in names for crit in (False, True)]


def _int_json(values: np.ndarray, suffix: str, nullable: bool = False):
    """Each integer as json writes it, followed by ``suffix``; with ``nullable``, ``null`` below 0 (see _or_none).

    Formats each distinct value once: the columns hold a few thousand of them at most.
    """
    lo, hi = int(values.min()), int(values.max())
    distinct: Sequence[int]
    if hi - lo <= 2 * values.size:  # a table over the whole range is cheaper than sorting
        distinct, index = range(lo, hi + 1), values - lo
    else:
        unique, index = np.unique(values, return_inverse=True)
        distinct = unique.tolist()
    return _take_text([("null" if nullable and value < 0 else str(value)) + suffix for value in distinct], index)


def _float_json(values: np.ndarray):
    """Each float as json writes it (``float.__repr__``; NaN, Infinity), as an arrow string array.

    Arrow's cast writes the same shortest round-trip digits as repr, 5x faster,
    but lays some out differently: "1" for 1.0, 0.00001 for 1e-05, and an
    exponent where repr has none. Those values (integral, outside repr's
    positional range [1e-4, 1e16), non-finite, or with an exponent from arrow),
    and any that would not read back exactly, are written by json itself.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    values = np.ascontiguousarray(values, dtype=np.float64)
    text = pc.cast(pa.Array.from_buffers(pa.float64(), len(values), [None, pa.py_buffer(values)]), pa.large_string())
    with np.errstate(invalid="ignore"):  # a signalling NaN warns; it is odd either way
        size = np.abs(values)
        odd = ~((size >= 1e-4) & (size < 1e16)) | (values == np.floor(values))
    odd |= to_numpy(pc.find_substring(text, "e")) >= 0
    odd |= to_numpy(pc.cast(text, pa.float64())) != values
    if not odd.any():
        return text
    # Every odd value's text comes from json: take it from after the others.
    exact = text_array([json.dumps(value, allow_nan=True) for value in values[odd].tolist()])
    index = np.arange(len(values))
    index[odd] = len(values) + np.arange(len(exact))
    return pa.concat_arrays([text, exact]).take(index_array(index))


def _take_text(text: list[str], index: np.ndarray):
    """``text[index]`` as an arrow large-string array."""
    return text_array(text).take(index_array(index))


def _metadata(dag: Dag) -> list[dict]:
    """Process and thread names so Perfetto labels rows "DP rank d" / "PP rank s, …"."""
    one_step = slice(0, dag.ops_per_step)  # every worker runs ops in every step: one step names them all
    rank, dp_rank, stage = (dag.table[name][one_step] for name in ("rank", "dp_rank", "stage"))
    ranks, first = np.unique(rank, return_index=True)  # workers by rank
    dp_ranks, stages = dp_rank[first].tolist(), stage[first].tolist()
    events = [
        {"name": "process_name", "pid": dp_rank, "ph": "M", "args": {"name": f"DP rank {dp_rank}"}}
        for dp_rank in sorted(set(dp_ranks))
    ]
    for rank, dp_rank, stage in zip(ranks.tolist(), dp_ranks, stages):
        for index, category in enumerate(CATEGORIES):
            tid = rank * len(CATEGORIES) + index
            events.append(
                {
                    "name": "thread_name",
                    "pid": dp_rank,
                    "tid": tid,
                    "ph": "M",
                    "args": {"name": f"PP rank {stage}, TP rank 0, {category}"},
                }
            )
            events.append(
                {"name": "thread_sort_index", "pid": dp_rank, "tid": tid, "ph": "M", "args": {"sort_index": tid}}
            )
    return events


def _flow_events(
    flows: Sequence[Sequence[int] | np.ndarray], dag: Dag, start: np.ndarray, end: np.ndarray, marked: np.ndarray | None
) -> list[dict]:
    """Arrows from the end of each op of a chain to the start of the next."""
    chains = [np.asarray(chain, dtype=np.int64) for chain in flows]
    ops = np.unique(np.concatenate(chains)) if chains else np.zeros(0, dtype=np.int64)
    if not len(ops):
        return []
    bars = _bars(dag, start, end, marked, ops)
    at = {int(op): i for i, op in enumerate(ops)}  # op id → position in bars
    pid, tid, ts, dur = bars.pid, bars.tid, bars.ts, bars.dur
    events = []
    for chain_id, chain in enumerate(flows):
        for hop, (u, v) in enumerate(zip(chain[:-1], chain[1:])):
            u, v = at[int(u)], at[int(v)]
            flow_id = chain_id * 1_000_000 + hop
            events.append(
                {
                    "name": "critical",
                    "cat": "critical-path",
                    "ph": "s",
                    "id": flow_id,
                    "pid": int(pid[u]),
                    "tid": int(tid[u]),
                    "ts": float(ts[u] + dur[u]),
                }
            )
            events.append(
                {
                    "name": "critical",
                    "cat": "critical-path",
                    "ph": "f",
                    "bp": "e",
                    "id": flow_id,
                    "pid": int(pid[v]),
                    "tid": int(tid[v]),
                    "ts": float(ts[v]),
                }
            )
    return events


def _or_none(value: int):
    return None if value < 0 else int(value)
