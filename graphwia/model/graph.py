"""Views of the explicit DAG as node and edge tables and as a networkx graph.

Nodes are the DAG's node ids (:mod:`graphwia.model.dag`):

* op instances (``kind="op"``): optype, seq_id, dp_rank, stage, rank, step,
  mb_id and chunk (−1: none), duration, weight (duration or transfer time),
  launch_delay, start and end (observed, seconds relative to the step start),
  noop (p2p no-op class) and barrier (its group's barrier node, −1: local op);
* barrier nodes (``kind="barrier"``): ``group`` = the group kind (p2p-pair,
  dp-collective, embedding, clip), step and size;
* one step source per step (``kind="step-start"``).

Every edge has ``kind`` (see :data:`graphwia.model.schedule.EDGE_KINDS`) and
``via`` (the op whose weight it adds, −1: none). A selection of steps and
workers keeps the ops of those steps on those workers, the barriers and step
sources they touch, and the edges between kept nodes. The writers of
:mod:`graphwia.outputs.dag_export` put these views into files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional

import numpy as np
import pandas as pd

from graphwia.errors import UsageError
from graphwia.trace.steps import checked_steps, format_ranges

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

    from graphwia.model.dag import Dag
    from graphwia.model.weights import Weights

#: A worker selector: (dp_rank, stage), None standing for "any".
WorkerSpec = tuple[Optional[int], Optional[int]]

_OP_ATTRIBUTES = ("optype", "seq_id", "dp_rank", "stage", "rank", "step", "mb_id", "chunk", "duration", "start",
                  "end", "noop", "barrier")


def parse_workers(values: str | Iterable[str]) -> list[WorkerSpec]:
    """``"0:3 1:*"`` or ``["0:3,1:*"]`` → ``[(0, 3), (1, None)]``; ``*`` matches any rank or stage."""
    if isinstance(values, str):
        values = [values]
    specs = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            fields = part.split(":")
            if len(fields) != 2 or not all(f == "*" or f.isdigit() for f in fields):
                raise UsageError(f"--workers: {part!r} is not DP:STAGE (numbers or *), e.g. 0:3 or 1:*")
            specs.append(tuple(None if f == "*" else int(f) for f in fields))
    if not specs:
        raise UsageError("--workers: no worker given")
    return specs


def dag_to_networkx(dag: "Dag", steps: Iterable[int] | None = None, workers: Iterable[WorkerSpec] | None = None,
                    weights: "Weights" | None = None) -> "nx.DiGraph":
    """A networkx DiGraph of ``dag`` restricted to ``steps`` and ``workers`` (default: all).

    ``workers`` are (dp_rank, stage) pairs, None matching any. ``weights``
    defaults to the observed ones (SPEC §3). Raises
    :class:`~graphwia.errors.UsageError` when a step or worker is not in the DAG.
    """
    import networkx as nx

    from graphwia.model.weights import observed_weights

    keep = selected_nodes(dag, steps, workers)
    graph = nx.DiGraph(trial_name=dag.meta.trial_name, source=str(dag.trace.source), time_unit="s")
    for nodes in node_tables(dag, weights or observed_weights(dag), keep):
        graph.add_nodes_from(zip(nodes["node"].tolist(), _records(nodes.drop(columns="node"))))
    edges = edge_table(dag, keep)
    graph.add_edges_from(zip(edges["src"].tolist(), edges["dst"].tolist(), _records(edges[["kind", "via"]])))
    graph.graph["steps"] = format_ranges(np.unique(node_steps(dag)[keep]))
    return graph


def edge_table(dag: "Dag", keep: np.ndarray | None = None) -> pd.DataFrame:
    """Edges between kept nodes (mask over all nodes; default all): src, dst, kind, via, step (of dst)."""
    edges = dag.edges.to_frame()
    if keep is not None:
        edges = edges[keep[edges["src"].to_numpy()] & keep[edges["dst"].to_numpy()]].reset_index(drop=True)
    edges["kind"] = edges["kind"].astype(str)
    edges["step"] = node_steps(dag)[edges["dst"].to_numpy()]
    return edges


def node_tables(dag: "Dag", weights: "Weights", keep: np.ndarray) -> list[pd.DataFrame]:
    """Kept op, barrier and step-source nodes, one table each (columns: node + attributes)."""
    tables = [_barrier_nodes(dag), _source_nodes(dag)]
    return [_op_nodes(dag, weights, keep)] + [table[keep[table["node"].to_numpy()]] for table in tables]


def _op_nodes(dag: "Dag", weights: "Weights", keep: np.ndarray) -> pd.DataFrame:
    """The kept ops only: their labels are the costly part of a selection from a large DAG."""
    node = np.flatnonzero(keep[: dag.n_ops])
    ops = dag.ops.iloc[node]
    frame = pd.DataFrame({"node": node, "kind": "op"})
    for column in _OP_ATTRIBUTES:
        frame[column] = ops[column].to_numpy()
    frame["optype"] = frame["optype"].astype(str)
    frame["noop"] = frame["noop"].astype(np.int64)
    frame["weight"] = weights.weight[node]
    frame["launch_delay"] = weights.delay[node]
    frame["label"] = (frame["optype"] + " " + frame["seq_id"].astype(str) + " (dp " + frame["dp_rank"].astype(str)
                      + ", stage " + frame["stage"].astype(str) + ") step " + frame["step"].astype(str))
    return frame


def _barrier_nodes(dag: "Dag") -> pd.DataFrame:
    barriers = dag.barriers
    group = barriers["kind"].astype(str).to_numpy()
    return pd.DataFrame({"node": dag.n_ops + np.arange(dag.n_barriers), "kind": "barrier", "group": group,
                         "step": barriers["step"].to_numpy(), "size": barriers["size"].to_numpy(),
                         "label": pd.Series(group).radd("barrier ").to_numpy()})


def _source_nodes(dag: "Dag") -> pd.DataFrame:
    first = dag.n_ops + dag.n_barriers
    return pd.DataFrame({"node": first + np.arange(len(dag.steps)), "kind": "step-start", "step": dag.steps,
                         "label": [f"step {s} start" for s in dag.steps]})


def node_steps(dag: "Dag") -> np.ndarray:
    """Step of every node."""
    return np.concatenate([dag.ops["step"].to_numpy(), dag.barriers["step"].to_numpy(), dag.steps]).astype(np.int64)


def selected_nodes(dag: "Dag", steps, workers) -> np.ndarray:
    """Mask over all nodes: selected ops, the barriers of their groups, their steps' sources."""
    node_step = node_steps(dag)
    if steps is not None:
        wanted = checked_steps(steps, dag.steps, dag.trace.source, "in the DAG")
        in_steps = np.isin(node_step, wanted)
    else:
        in_steps = np.ones(dag.n_nodes, dtype=bool)
    keep = in_steps.copy()
    keep[: dag.n_ops] &= _on_workers(dag, workers)
    members = dag.ops["barrier"].to_numpy()
    chosen_members = np.flatnonzero(keep[: dag.n_ops] & (members >= 0))
    keep[dag.n_ops: dag.n_ops + dag.n_barriers] = False
    keep[members[chosen_members]] = True
    return keep


def _on_workers(dag: "Dag", workers: Iterable[WorkerSpec] | None) -> np.ndarray:
    dp_rank = dag.ops["dp_rank"].to_numpy()
    stage = dag.ops["stage"].to_numpy()
    if workers is None:
        return np.ones(dag.n_ops, dtype=bool)
    mask = np.zeros(dag.n_ops, dtype=bool)
    for dp, st in workers:
        hit = ((dp_rank == dp) if dp is not None else True) & ((stage == st) if st is not None else True)
        if not np.any(hit):
            raise UsageError(f"{dag.trace.source}: --workers {'*' if dp is None else dp}:{'*' if st is None else st} "
                             f"matches no worker (dp_size {dag.meta.dp_size}, pp_size {dag.meta.pp_size})")
        mask |= hit
    return mask


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as attribute dicts of plain Python values (what every graph writer accepts)."""
    return frame.to_dict("records")
