"""Chrome trace-event timelines that Perfetto opens (SPEC §6).

One complete (``"ph": "X"``) event per op instance, times in microseconds,
process = DP rank, one thread per (rank, category), steps laid one after
another with a gap of :data:`STEP_GAP` × the longest step. Optional overlays
mark a set of ops and join consecutive ones with flow arrows (critical paths).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .dag import Dag
from .io import write_json
from .optypes import TIMELINE_CATEGORY

CATEGORIES = ("compute", "pp-comm", "tp-comm", "dp-comm", "misc")
STEP_GAP = 0.1
US = 1e6


def drawn_start(dag: Dag, start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Where an op's bar begins: its start, or for a group member end − transfer time."""
    member = dag.ops["barrier"].to_numpy() >= 0
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
    ops = dag.ops
    offset = step_offsets(dag, end)
    ts = (start + offset) * US
    dur = np.maximum(end - start, 0.0) * US
    category = ops["optype"].map(TIMELINE_CATEGORY).astype(object).fillna("misc")
    cat_index = pd.Index(CATEGORIES).get_indexer(category)
    tid = ops["rank"].to_numpy().astype(np.int64) * len(CATEGORIES) + cat_index
    pid = ops["dp_rank"].to_numpy()
    marked = np.zeros(len(ops), dtype=bool) if marked is None else marked
    names = ops["optype"].astype(str).to_numpy()
    columns = zip(names, pid.tolist(), tid.tolist(), ts.tolist(), dur.tolist(), ops["step"].tolist(),
                  ops["chunk"].tolist(), ops["mb_id"].tolist(), ops["seq_id"].tolist(), marked.tolist())
    events = [
        {"name": name + ("*" if crit else ""), "cat": "critical" if crit else name, "pid": p, "tid": t, "ts": s,
         "dur": d, "ph": "X", "args": {"step": step, "model_chunk": _or_none(chunk), "mb_id": _or_none(mb),
                                        "seq_id": seq}}
        for name, p, t, s, d, step, chunk, mb, seq, crit in columns
    ]
    events.extend(_metadata(ops))
    events.extend(_flow_events(flows, pid, tid, ts, dur))
    return events


def write_timeline(path: str | Path, events: list[dict]) -> Path:
    """Write events as a gzip-compressed JSON array, atomically."""
    return write_json(path, events, indent=None, compress=True)


def _metadata(ops) -> list[dict]:
    """Process and thread names so Perfetto labels rows "DP rank d" / "PP rank s, …"."""
    events = []
    workers = ops.drop_duplicates(["rank"])[["dp_rank", "stage", "rank"]].sort_values("rank")
    for dp_rank in sorted(workers["dp_rank"].unique().tolist()):
        events.append({"name": "process_name", "pid": dp_rank, "ph": "M", "args": {"name": f"DP rank {dp_rank}"}})
    for row in workers.itertuples():
        for index, category in enumerate(CATEGORIES):
            tid = int(row.rank) * len(CATEGORIES) + index
            events.append({"name": "thread_name", "pid": int(row.dp_rank), "tid": tid, "ph": "M",
                           "args": {"name": f"PP rank {row.stage}, TP rank 0, {category}"}})
            events.append({"name": "thread_sort_index", "pid": int(row.dp_rank), "tid": tid, "ph": "M",
                           "args": {"sort_index": tid}})
    return events


def _flow_events(flows, pid, tid, ts, dur) -> list[dict]:
    """Arrows from the end of each op of a chain to the start of the next."""
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
