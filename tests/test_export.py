"""DAG export: the networkx view, every file format, selections, and the export-dag command."""

from __future__ import annotations

import json
import re

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from graphwia import Trace, UsageError, build_dag
from graphwia.model.graph import dag_to_networkx, parse_workers
from graphwia.outputs.dag_export import FORMATS, export_dag
from graphwia.model.schedule import EDGE_KINDS
from graphwia.synth.generate import synthesize, write_synth

from conftest import real_trace, requires_data


@pytest.fixture(scope="module")
def dag():
    frame, meta = synthesize(dp=2, pp=3, microbatches=6, steps=3, seed=2)
    return build_dag(Trace.from_frame(frame, meta))


@requires_data
def test_graphml_of_two_st_steps_reads_back_acyclic(tmp_path):
    trace = real_trace("ST")
    dag = build_dag(trace)
    steps = [int(s) for s in dag.steps[:2]]
    path = export_dag(dag, tmp_path / "st.graphml", steps=steps)
    graph = nx.read_graphml(path, node_type=int)
    assert nx.is_directed_acyclic_graph(graph)
    ops = [n for n, a in graph.nodes(data=True) if a["kind"] == "op"]
    assert len(ops) == int(trace.ops["step"].isin(steps).sum())
    assert {graph.nodes[n]["step"] for n in ops} == set(steps)
    barriers = [n for n, a in graph.nodes(data=True) if a["kind"] == "barrier"]
    assert barriers and {graph.nodes[n]["group"] for n in barriers} <= set(EDGE_KINDS)
    assert {a["kind"] for _, _, a in graph.edges(data=True)} <= set(EDGE_KINDS)


def test_networkx_view_carries_the_dag(dag):
    graph = dag.to_networkx()
    assert graph.number_of_nodes() == dag.n_nodes
    assert graph.number_of_edges() == len(dag.edges)
    op = graph.nodes[5]
    row = dag.ops.iloc[5]
    assert op["kind"] == "op" and op["optype"] == row["optype"] and op["seq_id"] == row["seq_id"]
    for key in ("dp_rank", "stage", "rank", "step", "duration", "weight", "launch_delay", "start", "end"):
        assert key in op
    member = int(np.flatnonzero(dag.ops["barrier"].to_numpy() >= 0)[0])
    barrier = graph.nodes[int(dag.ops["barrier"].iloc[member])]
    assert barrier["kind"] == "barrier" and barrier["group"] in EDGE_KINDS
    assert graph.has_edge(member, int(dag.ops["barrier"].iloc[member]))
    sources = [n for n, a in graph.nodes(data=True) if a["kind"] == "step-start"]
    assert len(sources) == len(dag.steps) and all(graph.in_degree(n) == 0 for n in sources)
    assert nx.is_directed_acyclic_graph(graph)


def test_selection_keeps_chosen_workers_and_their_groups(dag):
    graph = dag_to_networkx(dag, steps=[1], workers=[(0, 2), (1, None)])
    ops = {n: a for n, a in graph.nodes(data=True) if a["kind"] == "op"}
    chosen = dag.ops[(dag.ops["step"] == 1) & (((dag.ops["dp_rank"] == 0) & (dag.ops["stage"] == 2))
                                               | (dag.ops["dp_rank"] == 1))]
    assert sorted(ops) == chosen.index.tolist()
    for node, attrs in graph.nodes(data=True):
        if attrs["kind"] == "barrier":  # kept only with a kept member
            assert any(graph.nodes[m]["kind"] == "op" for m in graph.predecessors(node))
        assert attrs["step"] == 1


@pytest.mark.parametrize("text, expected", [
    ("0:3", [(0, 3)]), ("0:3,1:*", [(0, 3), (1, None)]), ("*:2 4:0", [(None, 2), (4, 0)]),
])
def test_parse_workers(text, expected):
    assert parse_workers(text) == expected


@pytest.mark.parametrize("text", ["3", "a:b", "1:2:3", ""])
def test_parse_workers_rejects(text):
    with pytest.raises(UsageError, match="--workers"):
        parse_workers(text)


def test_selection_errors_name_the_culprit(dag):
    with pytest.raises(UsageError, match="--workers 5:0 matches no worker"):
        dag_to_networkx(dag, workers=[(5, 0)])
    with pytest.raises(UsageError, match="step.* 9 are not in the DAG"):
        dag_to_networkx(dag, steps=[9])


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_every_format_round_trips(dag, tmp_path, suffix):
    graph = dag_to_networkx(dag, steps=[0])
    path = export_dag(dag, tmp_path / f"g{suffix}", steps=[0])
    if suffix == ".graphml":
        back = nx.read_graphml(path, node_type=int)
    elif suffix == ".gexf":
        back = nx.read_gexf(path, node_type=int)
        assert "t_start" in back.nodes[0] and "start" not in back.nodes[0]
    elif suffix == ".json":
        back = nx.node_link_graph(json.loads(path.read_text()), edges="edges")
    elif suffix in (".dot", ".gv"):
        back = _read_dot(path.read_text())
    else:
        edges = pd.read_parquet(path)
        assert list(edges.columns) == ["src", "dst", "via", "kind", "step"]
        back = nx.DiGraph(list(zip(edges["src"], edges["dst"])))
        back.add_nodes_from(graph.nodes)
    assert set(back.nodes) == set(graph.nodes)
    assert set(back.edges) == set(graph.edges)
    if suffix != ".parquet":
        u, v = next(iter(graph.edges))
        assert back.edges[u, v]["kind"] == graph.edges[u, v]["kind"]
        assert back.nodes[u]["kind"] == graph.nodes[u]["kind"]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def _read_dot(text: str) -> nx.DiGraph:
    """Enough of a DOT reader for our own output: node and edge statements with quoted attributes."""
    graph = nx.DiGraph()
    for line in text.splitlines():
        attrs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line))
        if m := re.match(r"\s*n(\d+) -> n(\d+) \[", line):
            graph.add_edge(int(m[1]), int(m[2]), **attrs)
        elif m := re.match(r"\s*n(\d+) \[", line):
            graph.add_node(int(m[1]), **attrs)
    assert text.startswith("digraph ") and text.rstrip().endswith("}")
    return graph


def test_unknown_extension_is_refused(dag, tmp_path):
    with pytest.raises(UsageError, match="unknown graph format .xml"):
        export_dag(dag, tmp_path / "g.xml")
    assert list(tmp_path.iterdir()) == []


def test_cli_export_dag(tmp_path):
    trace, meta = write_synth(tmp_path, "ex", dp=2, pp=2, microbatches=4, steps=3, seed=5)
    runner = CliRunner()
    from graphwia.cli.main import app

    out = tmp_path / "g.graphml"
    result = runner.invoke(app, ["export-dag", str(trace), "--out", str(out), "--steps", "1", "2",
                                 "--workers", "0:*"])
    assert result.exit_code == 0, result.output
    graph = nx.read_graphml(out, node_type=int)
    ops = [a for _, a in graph.nodes(data=True) if a["kind"] == "op"]
    assert {a["step"] for a in ops} == {1, 2} and {a["dp_rank"] for a in ops} == {0}
    for args, message in ((["--out", str(tmp_path / "g.txt")], "unknown graph format"),
                          (["--out", str(out), "--workers", "0-1"], "is not DP:STAGE"),
                          (["--out", str(out), "--steps", "8"], "step 8 is not in the trace")):
        result = runner.invoke(app, ["export-dag", str(trace), *args])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
