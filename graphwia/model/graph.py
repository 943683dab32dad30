"""Views of the explicit DAG as node and edge tables and as a networkx graph.

Nodes are the DAG's node ids (:mod:`graphwia.model.dag`), in three kinds, each
with its own attributes (:data:`NODE_ATTRIBUTES`):

* op instances (``kind="op"``): optype, seq_id, dp_rank, stage, rank, step,
  mb_id and chunk (−1: none), duration, weight (duration or transfer time),
  launch_delay, start and end (observed, seconds relative to the step start),
  noop (p2p no-op class), barrier (its group's barrier node, −1: local op) and
  a readable label;
* barrier nodes (``kind="barrier"``): ``group`` = the group kind (p2p-pair,
  dp-collective, embedding, clip), step, size and label;
* one step source per step (``kind="step-start"``): step and label.

Every edge has ``kind`` (see :data:`graphwia.model.schedule.EDGE_KINDS`),
``via`` (the op whose weight it adds, −1: none) and ``step`` (of its target).
A selection of steps and workers keeps the ops of those steps on those
workers, the barriers and step sources they touch, and the edges between kept
nodes.

The tables are pyarrow tables built from the DAG's arrays (no pandas), so the
writers of :mod:`graphwia.outputs.dag_export` can stream them to files of any
size; :func:`dag_to_networkx` is for selections small enough to hold as
Python objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from graphwia.errors import ArgumentError
from graphwia.model.observed import observed_weights
from graphwia.model.schedule import EDGE_KINDS
from graphwia.trace.steps import checked_steps, format_ranges

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx
    import pyarrow as pa

    from graphwia.model.dag import Dag
    from graphwia.model.observed import Weights

__all__ = [
    "EDGE_ATTRIBUTES",
    "NODE_ATTRIBUTES",
    "WorkerSpec",
    "Workers",
    "dag_to_networkx",
    "edge_table",
    "graph_attributes",
    "join_text",
    "node_steps",
    "node_tables",
    "numbers_array",
    "parse_workers",
    "selected_nodes",
    "worker_specs",
]

#: A worker selector: (dp_rank, stage), None standing for "any".
WorkerSpec = tuple[int | None, int | None]
#: What a worker selection may be given as: ``"0:3,1:*"``, several such strings, or (dp_rank, stage) pairs.
Workers = str | Iterable[str | WorkerSpec]

#: Attributes of each kind of node, in the order files list them.
NODE_ATTRIBUTES = {
    "op": (
        "kind",
        "optype",
        "seq_id",
        "dp_rank",
        "stage",
        "rank",
        "step",
        "mb_id",
        "chunk",
        "duration",
        "weight",
        "launch_delay",
        "start",
        "end",
        "noop",
        "barrier",
        "label",
    ),
    "barrier": ("kind", "group", "step", "size", "label"),
    "step-start": ("kind", "step", "label"),
}
EDGE_ATTRIBUTES = ("kind", "via", "step")


def parse_workers(values: str | Iterable[str]) -> list[WorkerSpec]:
    """``"0:3 1:*"`` or ``["0:3,1:*"]`` → ``[(0, 3), (1, None)]``; ``*`` matches any rank or stage."""
    if isinstance(values, str):
        values = [values]
    specs: list[WorkerSpec] = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            fields = part.split(":")
            if len(fields) != 2 or not all(f == "*" or f.isdigit() for f in fields):
                raise ArgumentError("workers", repr(part), "not DP:STAGE (numbers or *), e.g. 0:3 or 1:*")
            dp, stage = (None if f == "*" else int(f) for f in fields)
            specs.append((dp, stage))
    if not specs:
        raise ArgumentError("workers", None, "no worker given")
    return specs


def worker_specs(workers: Workers | None) -> list[WorkerSpec] | None:
    """A worker selection as (dp_rank, stage) pairs: the CLI's strings (``"0:3,1:*"``) or pairs; None: all."""
    if workers is None:
        return None
    if isinstance(workers, str):
        return parse_workers(workers)
    specs: list[WorkerSpec] = []
    for item in workers:
        if isinstance(item, str):
            specs += parse_workers(item)
        elif (
            isinstance(item, tuple)
            and len(item) == 2
            and all(v is None or isinstance(v, (int, np.integer)) for v in item)
        ):
            specs.append((None if item[0] is None else int(item[0]), None if item[1] is None else int(item[1])))
        else:
            raise ArgumentError("workers", repr(item), "not DP:STAGE or a (dp_rank, stage) pair")
    if not specs:
        raise ArgumentError("workers", None, "no worker given")
    return specs


def dag_to_networkx(
    dag: Dag,
    *,
    steps: Iterable[int] | int | None = None,
    workers: Workers | None = None,
    weights: Weights | None = None,
) -> nx.DiGraph:
    """A networkx DiGraph of ``dag`` restricted to ``steps`` and ``workers`` (default: all).

    ``workers`` as :func:`worker_specs` takes them. ``weights`` defaults to the
    observed ones (SPEC §3). Raises :class:`~graphwia.errors.UsageError` when a
    step or worker is not in the DAG. Every node and edge becomes Python
    objects: meant for selections, not for the DAG of a large job (stream
    those to a file with :func:`graphwia.outputs.dag_export.export_dag`).
    """
    import networkx as nx

    keep = selected_nodes(dag, steps, workers)
    graph = nx.DiGraph(**graph_attributes(dag, keep))
    for nodes in node_tables(dag, keep, weights=weights):
        rows = nodes.to_pylist()
        graph.add_nodes_from((row.pop("node"), row) for row in rows)
    edges = edge_table(dag, keep=keep).to_pylist()
    graph.add_edges_from((row.pop("src"), row.pop("dst"), row) for row in edges)
    return graph


def graph_attributes(dag: Dag, keep: np.ndarray) -> dict[str, str]:
    """The whole graph's attributes: trial name, trace file, time unit and the steps kept."""
    return {
        "trial_name": str(dag.meta.trial_name),
        "source": str(dag.trace.source),
        "time_unit": "s",
        "steps": format_ranges(np.unique(node_steps(dag)[keep])),
    }


def node_tables(dag: Dag, keep: np.ndarray, *, weights: Weights | None = None) -> list[pa.Table]:
    """Kept op, barrier and step-source nodes: one table per kind, columns ``node`` + :data:`NODE_ATTRIBUTES`.

    ``weights`` defaults to the observed ones (SPEC §3).
    """
    return [
        _op_nodes(dag, weights or observed_weights(dag), np.flatnonzero(keep[: dag.n_ops])),
        _barrier_nodes(dag, np.flatnonzero(keep[dag.n_ops : dag.n_ops + dag.n_barriers])),
        _source_nodes(dag, np.flatnonzero(keep[dag.n_ops + dag.n_barriers :])),
    ]


def edge_table(dag: Dag, *, keep: np.ndarray | None = None) -> pa.Table:
    """Edges between kept nodes (mask over all nodes; default all): src, dst, kind, via, step (of dst)."""
    import pyarrow as pa

    edges = dag.edges
    rows = np.arange(len(edges)) if keep is None else np.flatnonzero(keep[edges.src] & keep[edges.dst])
    return pa.table(
        {
            "src": numbers_array(edges.src[rows]),
            "dst": numbers_array(edges.dst[rows]),
            "kind": _labels(EDGE_KINDS, edges.kind[rows]),
            "via": numbers_array(edges.via[rows]),
            "step": numbers_array(node_steps(dag)[edges.dst[rows]]),
        }
    )


def _op_nodes(dag: Dag, weights: Weights, rows: np.ndarray) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    ops = dag.table
    optype = _labels(ops.categories["optype"], ops["optype"][rows])
    columns = {"node": numbers_array(rows), "kind": _repeat("op", len(rows)), "optype": optype}
    for name in ("seq_id", "dp_rank", "stage", "rank", "step", "mb_id", "chunk"):
        columns[name] = numbers_array(ops[name][rows])
    columns.update(
        duration=numbers_array(ops["duration"][rows]),
        weight=numbers_array(weights.weight[rows]),
        launch_delay=numbers_array(weights.delay[rows]),
        start=numbers_array(ops["start"][rows]),
        end=numbers_array(ops["end"][rows]),
        noop=numbers_array(ops["noop"][rows]),
        barrier=numbers_array(ops["barrier"][rows]),
    )
    text = {name: pc.cast(columns[name], pa.string()) for name in ("seq_id", "dp_rank", "stage", "step")}
    columns["label"] = join_text(
        optype, " ", text["seq_id"], " (dp ", text["dp_rank"], ", stage ", text["stage"], ") step ", text["step"]
    )
    return pa.table(columns)


def _barrier_nodes(dag: Dag, rows: np.ndarray) -> pa.Table:
    import pyarrow as pa

    barriers = dag.barrier_table
    group = _labels(EDGE_KINDS, barriers["kind"][rows])
    return pa.table(
        {
            "node": numbers_array(dag.n_ops + rows),
            "kind": _repeat("barrier", len(rows)),
            "group": group,
            "step": numbers_array(barriers["step"][rows]),
            "size": numbers_array(barriers["size"][rows]),
            "label": join_text("barrier ", group),
        }
    )


def _source_nodes(dag: Dag, rows: np.ndarray) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    step = numbers_array(dag.steps[rows])
    return pa.table(
        {
            "node": numbers_array(dag.n_ops + dag.n_barriers + rows),
            "kind": _repeat("step-start", len(rows)),
            "step": step,
            "label": join_text("step ", pc.cast(step, pa.string()), " start"),
        }
    )


def node_steps(dag: Dag) -> np.ndarray:
    """Step of every node."""
    return np.concatenate([dag.table["step"], dag.barrier_table["step"], dag.steps]).astype(np.int64)


def selected_nodes(dag: Dag, steps: Iterable[int] | int | None, workers: Workers | None) -> np.ndarray:
    """Mask over all nodes: selected ops, the barriers of their groups, their steps' sources."""
    node_step = node_steps(dag)
    if steps is not None:
        wanted = checked_steps(steps, dag.steps, dag.trace.source, where="in the DAG")
        keep = np.isin(node_step, wanted)
    else:
        keep = np.ones(dag.n_nodes, dtype=bool)
    keep[: dag.n_ops] &= _on_workers(dag, worker_specs(workers))
    members = dag.table["barrier"]
    chosen_members = np.flatnonzero(keep[: dag.n_ops] & (members >= 0))
    keep[dag.n_ops : dag.n_ops + dag.n_barriers] = False
    keep[members[chosen_members]] = True
    return keep


def _on_workers(dag: Dag, workers: list[WorkerSpec] | None) -> np.ndarray:
    if workers is None:
        return np.ones(dag.n_ops, dtype=bool)
    dp_rank, stage = dag.table["dp_rank"], dag.table["stage"]
    mask = np.zeros(dag.n_ops, dtype=bool)
    for dp, st in workers:
        hit = ((dp_rank == dp) if dp is not None else True) & ((stage == st) if st is not None else True)
        if not np.any(hit):
            raise ArgumentError(
                "workers",
                f"{'*' if dp is None else dp}:{'*' if st is None else st}",
                f"matches no worker (dp_size {dag.meta.dp_size}, pp_size {dag.meta.pp_size})",
                source=str(dag.trace.source),
            )
        mask |= hit
    return mask


def numbers_array(values: np.ndarray) -> pa.Array:
    """An integer (as int64) or float (as float64) numpy column as an arrow array, from its buffer."""
    import pyarrow as pa

    values = np.asarray(values)
    kind, dtype = (pa.float64(), np.float64) if values.dtype.kind == "f" else (pa.int64(), np.int64)
    values = np.ascontiguousarray(values, dtype=dtype)
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])


def _labels(names: Iterable[str], codes: np.ndarray) -> pa.Array:
    """Category codes as an arrow string array of their names."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from graphwia.utils.arrow import index_array, text_array

    return pc.cast(text_array(list(names)).take(index_array(codes)), pa.string())


def join_text(*pieces) -> pa.Array:
    """Row by row, the concatenation of ``pieces``: text (the same in every row) or arrow string arrays.

    A large-string array. (Literals go in as arrays' elements: ``pa.scalar``
    would import pandas.)
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from graphwia.utils.arrow import text_array

    def literal(text: str):
        return text_array([text])[0]

    return pc.binary_join_element_wise(
        *[literal(p) if isinstance(p, str) else p.cast(pa.large_string()) for p in pieces], literal("")
    )


def _repeat(text: str, n: int) -> pa.Array:
    """``text`` ``n`` times as an arrow string array."""
    return _labels([text], np.zeros(n, dtype=np.int64))
