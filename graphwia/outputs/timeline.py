"""Chrome trace-event timelines that Perfetto opens (SPEC §6).

One complete (``"ph": "X"``) event per op instance, times in microseconds,
process = DP rank, one thread per (rank, category), steps laid one after
another with a gap of :data:`STEP_GAP` × the longest step. Optional overlays
mark a set of ops and join consecutive ones with flow arrows (critical paths).

Two ways to the same events: :func:`timeline_events` returns them as dicts
(to inspect or test), :func:`timeline_json` as the text ``json.dumps`` makes of
that list, built column-wise from the numpy op table. Building and dumping a
dict and a dozen boxed numbers per op costs several times more than the text
itself (AR, 117k ops: 1.1 s + 1.2 s against 0.07 s), so writers use
:func:`timeline_json` and :func:`write_timeline_json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from graphwia.utils.arrow import index_array, text_array, to_numpy
from graphwia.model.dag import Dag
from graphwia.utils.io import write_gzip, write_json
from graphwia.optypes import TIMELINE_CATEGORY

CATEGORIES = ("compute", "pp-comm", "tp-comm", "dp-comm", "misc")
STEP_GAP = 0.1
US = 1e6
#: gzip level of :func:`write_timeline_json`. Measured on AR's two timelines (24 MB of JSON each):
#: level 6 takes 0.31 s a timeline for 4.02 MB in all, level 3 0.12 s for 4.67 MB (+16%), level 1
#: 0.09 s for 5.78 MB (+44%). At 6, compressing would be 3/4 of writing a timeline.
GZIP_LEVEL = 3


def drawn_start(dag: Dag, start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Where an op's bar begins: its start, or for a group member end − transfer time."""
    member = dag.table["barrier"] >= 0
    return np.where(member, end - weight, start)


def step_offsets(dag: Dag, end: np.ndarray) -> np.ndarray:
    """Offset (seconds) of each op's step when steps are laid end to end with a gap."""
    n_steps = len(dag.steps)
    longest = float(end.reshape(n_steps, -1).max()) if end.size else 0.0
    return np.repeat(np.arange(n_steps) * longest * (1 + STEP_GAP), dag.ops_per_step)


def timeline_events(dag: Dag, start: np.ndarray, end: np.ndarray, *, marked: np.ndarray | None = None,
                    flows: Sequence[Sequence[int]] = ()) -> list[dict]:
    """Trace events for bars from ``start`` to ``end`` (seconds, relative to each step).

    ``marked``: boolean mask of ops drawn as critical (category ``critical``,
    name suffixed with ``*``). ``flows``: chains of op ids joined by arrows.
    """
    bars = _bars(dag, start, end, marked)
    names = bars.names
    columns = zip(bars.code.tolist(), bars.pid.tolist(), bars.tid.tolist(), bars.ts.tolist(), bars.dur.tolist(),
                  bars.step.tolist(), bars.chunk.tolist(), bars.mb.tolist(), bars.seq.tolist(), bars.crit.tolist())
    events = [
        {"name": names[code] + ("*" if crit else ""), "cat": "critical" if crit else names[code], "pid": p, "tid": t,
         "ts": s, "dur": d, "ph": "X", "args": {"step": step, "model_chunk": _or_none(chunk), "mb_id": _or_none(mb),
                                                "seq_id": seq}}
        for code, p, t, s, d, step, chunk, mb, seq, crit in columns
    ]
    return events + _metadata(dag.table) + _flow_events(flows, bars)


def timeline_json(dag: Dag, start: np.ndarray, end: np.ndarray, *, marked: np.ndarray | None = None,
                  flows: Sequence[Sequence[int]] = ()) -> bytes:
    """``json.dumps(timeline_events(dag, start, end, marked=marked, flows=flows), allow_nan=True)``
    as UTF-8, byte for byte, built without the events.

    The complete events are formatted column by column with pyarrow's string
    kernels (see :func:`_bars_json`); the few process, thread and flow events
    go through json.
    """
    bars = _bars(dag, start, end, marked)
    extra = json.dumps(_metadata(dag.table) + _flow_events(flows, bars), allow_nan=True)[1:-1].encode()
    body = _bars_json(bars)
    # One copy of the ~200 bytes per op; extra holds the process names whenever there are ops.
    return b"".join([b"[", body, b", " if len(body) else b"", extra, b"]"])


def write_timeline(path: str | Path, events: list[dict]) -> Path:
    """Write events as a gzip-compressed JSON array, atomically."""
    return write_json(path, events, indent=None, compress=True)


def write_timeline_json(path: str | Path, text: bytes) -> Path:
    """Write the text of :func:`timeline_json` gzip-compressed (at :data:`GZIP_LEVEL`), atomically.

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


def _bars(dag: Dag, start: np.ndarray, end: np.ndarray, marked: np.ndarray | None) -> _Bars:
    """Columns of the complete events: times in µs, steps laid end to end, one thread per (rank, category)."""
    table = dag.table
    # An op without optype is drawn as the pandas path did: named "nan", in category misc.
    names = tuple(table.categories["optype"]) + ("nan",)
    cat_index = np.array([CATEGORIES.index(TIMELINE_CATEGORY.get(name, "misc")) for name in names])
    code = table["optype"].astype(np.intp) % len(names)  # −1 → the last name
    ts = (start + step_offsets(dag, end)) * US
    dur = np.maximum(end - start, 0.0) * US
    tid = table["rank"].astype(np.int64) * len(CATEGORIES) + cat_index[code]
    crit = np.zeros(len(table), dtype=bool) if marked is None else np.asarray(marked, dtype=bool)
    return _Bars(names, code, crit, table["dp_rank"], tid, ts, dur, table["step"], table["chunk"],
                 table["mb_id"], table["seq_id"])


def _bars_json(bars: _Bars) -> memoryview:
    """The complete events as json writes them, separated by ", ", without the enclosing brackets.

    Each column becomes an arrow string array (with the text up to the next
    column appended); one element-wise join lays the events out one after
    another in a single buffer. Large strings (64-bit offsets): a timeline can
    pass 2 GiB.
    """
    import pyarrow.compute as pc

    if not len(bars.code):
        return memoryview(b"")
    dur_key, args_key = (text_array([text])[0] for text in (', "dur": ', ', "ph": "X", "args": {"step": '))
    events = pc.binary_join_element_wise(
        _take_text(_heads(bars.names), bars.code * 2 + bars.crit), _int_json(bars.pid, ', "tid": '),
        _int_json(bars.tid, ', "ts": '), _float_json(bars.ts), dur_key, _float_json(bars.dur), args_key,
        _int_json(bars.step, ', "model_chunk": '), _int_json(bars.chunk, ', "mb_id": ', nullable=True),
        _int_json(bars.mb, ', "seq_id": ', nullable=True), _int_json(bars.seq, "}}, "), text_array([""])[0])
    offsets = np.frombuffer(events.buffers()[1], dtype=np.int64, count=events.offset + len(events) + 1)
    first, last = int(offsets[events.offset]), int(offsets[-1])
    return memoryview(events.buffers()[2])[first:last - 2]  # no ", " after the last event


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
    if hi - lo <= 2 * values.size:  # a table over the whole range is cheaper than sorting
        distinct, index = range(lo, hi + 1), values - lo
    else:
        distinct, index = np.unique(values, return_inverse=True)
        distinct = distinct.tolist()
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


def _metadata(table) -> list[dict]:
    """Process and thread names so Perfetto labels rows "DP rank d" / "PP rank s, …"."""
    ranks, first = np.unique(table["rank"], return_index=True)  # workers by rank, as each first appears
    dp_ranks, stages = table["dp_rank"][first].tolist(), table["stage"][first].tolist()
    events = [{"name": "process_name", "pid": dp_rank, "ph": "M", "args": {"name": f"DP rank {dp_rank}"}}
              for dp_rank in sorted(set(dp_ranks))]
    for rank, dp_rank, stage in zip(ranks.tolist(), dp_ranks, stages):
        for index, category in enumerate(CATEGORIES):
            tid = rank * len(CATEGORIES) + index
            events.append({"name": "thread_name", "pid": dp_rank, "tid": tid, "ph": "M",
                           "args": {"name": f"PP rank {stage}, TP rank 0, {category}"}})
            events.append({"name": "thread_sort_index", "pid": dp_rank, "tid": tid, "ph": "M",
                           "args": {"sort_index": tid}})
    return events


def _flow_events(flows, bars: _Bars) -> list[dict]:
    """Arrows from the end of each op of a chain to the start of the next."""
    pid, tid, ts, dur = bars.pid, bars.tid, bars.ts, bars.dur
    events = []
    for chain_id, chain in enumerate(flows):
        for hop, (u, v) in enumerate(zip(chain[:-1], chain[1:])):
            flow_id = chain_id * 1_000_000 + hop
            events.append({"name": "critical", "cat": "critical-path", "ph": "s", "id": flow_id, "pid": int(pid[u]),
                           "tid": int(tid[u]), "ts": float(ts[u] + dur[u])})
            events.append({"name": "critical", "cat": "critical-path", "ph": "f", "bp": "e", "id": flow_id,
                           "pid": int(pid[v]), "tid": int(tid[v]), "ts": float(ts[v])})
    return events


def _or_none(value: int):
    return None if value < 0 else int(value)
