"""Write the explicit DAG (or part of it) in graph formats other tools read.

:func:`export_dag` writes a selection of the DAG (see :mod:`graphwia.model.graph`
for the node and edge attributes), the format chosen by the file's extension
(:data:`FORMATS`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from graphwia.errors import UsageError
from graphwia.model.dag import Dag
from graphwia.model.graph import WorkerSpec, dag_to_networkx, edge_table, selected_nodes
from graphwia.utils.io import atomic_path, write_json

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

FORMATS = {
    ".graphml": "GraphML",
    ".gexf": "GEXF",
    ".json": "node-link JSON",
    ".dot": "Graphviz DOT",
    ".gv": "Graphviz DOT",
    ".parquet": "parquet edge list",
}


def export_dag(dag: Dag, path: str | Path, steps: Iterable[int] | None = None,
               workers: Iterable[WorkerSpec] | None = None) -> Path:
    """Write (part of) ``dag`` to ``path`` atomically in the format its extension names."""
    path = Path(path)
    suffix = check_format(path)
    if suffix == ".parquet":
        edges = edge_table(dag, selected_nodes(dag, steps, workers))
        with atomic_path(path) as tmp:
            edges.to_parquet(tmp, index=False)
        return path
    graph = dag_to_networkx(dag, steps=steps, workers=workers)
    if suffix == ".json":
        return write_json(path, node_link(graph), indent=None)
    with atomic_path(path) as tmp:
        if suffix == ".graphml":
            _write_graphml(graph, tmp)
        elif suffix == ".gexf":
            _write_gexf(graph, tmp)
        else:
            tmp.write_text(to_dot(graph))
    return path


def check_format(path: str | Path) -> str:
    """The extension of ``path`` if it names a format of :data:`FORMATS`, else :class:`UsageError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"--out {path}: unknown graph format {suffix or '(no extension)'}; "
                         f"use one of {', '.join(FORMATS)}")
    return suffix


def node_link(graph: "nx.DiGraph") -> dict:
    """networkx's node-link form with the key ``edges`` (``nx.node_link_graph(data, edges="edges")``)."""
    return {"directed": True, "multigraph": False, "graph": dict(graph.graph),
            "nodes": [{"id": node, **attrs} for node, attrs in graph.nodes(data=True)],
            "edges": [{"source": u, "target": v, **attrs} for u, v, attrs in graph.edges(data=True)]}


def to_dot(graph: "nx.DiGraph") -> str:
    """Graphviz DOT text: ops as boxes, barriers as diamonds, step sources as circles."""
    shapes = {"op": "box", "barrier": "diamond", "step-start": "circle"}
    lines = [f"digraph {_dot_id(graph.graph.get('trial_name') or 'graphwia')} {{", "  rankdir=LR;"]
    for node, attrs in graph.nodes(data=True):
        fields = {"shape": shapes.get(attrs.get("kind"), "box"), **attrs}
        lines.append(f"  n{node} [{_dot_attributes(fields)}];")
    for u, v, attrs in graph.edges(data=True):
        lines.append(f"  n{u} -> n{v} [{_dot_attributes(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- writers --------------------------------------------------------------------------

def _write_graphml(graph: "nx.DiGraph", path: Path) -> None:
    import networkx as nx

    nx.write_graphml(graph, path)


def _write_gexf(graph: "nx.DiGraph", path: Path) -> None:
    """GEXF reserves ``start``/``end`` for dynamic graphs, so times are written as t_start / t_end."""
    import networkx as nx

    renamed = graph.copy()
    for _, attrs in renamed.nodes(data=True):
        for key in ("start", "end"):
            if key in attrs:
                attrs[f"t_{key}"] = attrs.pop(key)
    nx.write_gexf(renamed, path)


def _dot_id(text: str) -> str:
    return json.dumps(str(text))


def _dot_attributes(attrs: dict) -> str:
    return ", ".join(f"{key}={_dot_id(value)}" for key, value in attrs.items())
