"""DAG export: the networkx view, every file format, selections, and the export-dag command."""

from __future__ import annotations

import gzip
import json
import re

import networkx as nx
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import real_trace, requires_data
from typer.testing import CliRunner

from graphwia import Trace, UsageError, build_dag
from graphwia.errors import ArgumentError
from graphwia.model.graph import NODE_ATTRIBUTES, dag_to_networkx, parse_workers
from graphwia.model.schedule import EDGE_KINDS
from graphwia.outputs import dag_export
from graphwia.outputs.dag_export import FORMATS, export_dag, node_table_path
from graphwia.synth.generate import synthesize, write_synth


@pytest.fixture(scope="module")
def dag():
    frame, meta = synthesize(dp=2, pp=3, microbatches=6, steps=3, seed=2)
    return build_dag(Trace.from_frame(frame, meta))


@requires_data
def test_graphml_of_two_st_steps_reads_back_acyclic(tmp_path):
    trace = real_trace("ST")
    dag = build_dag(trace)
    steps = [int(s) for s in dag.steps[:2]]
    (path,) = export_dag(dag, tmp_path / "st.graphml", steps=steps)
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
    chosen = dag.ops[
        (dag.ops["step"] == 1) & (((dag.ops["dp_rank"] == 0) & (dag.ops["stage"] == 2)) | (dag.ops["dp_rank"] == 1))
    ]
    assert sorted(ops) == chosen.index.tolist()
    for node, attrs in graph.nodes(data=True):
        if attrs["kind"] == "barrier":  # kept only with a kept member
            assert any(graph.nodes[m]["kind"] == "op" for m in graph.predecessors(node))
        assert attrs["step"] == 1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0:3", [(0, 3)]),
        ("0:3,1:*", [(0, 3), (1, None)]),
        ("*:2 4:0", [(None, 2), (4, 0)]),
    ],
)
def test_parse_workers(text, expected):
    assert parse_workers(text) == expected


@pytest.mark.parametrize("text", ["3", "a:b", "1:2:3", ""])
def test_parse_workers_rejects(text):
    with pytest.raises(ArgumentError, match="^workers") as raised:
        parse_workers(text)
    assert raised.value.argument == "workers"


def test_selection_errors_name_the_culprit(dag):
    with pytest.raises(ArgumentError, match="workers 5:0: matches no worker") as raised:
        dag_to_networkx(dag, workers=[(5, 0)])
    assert (raised.value.argument, raised.value.value) == ("workers", "5:0")
    with pytest.raises(UsageError, match="step.* 9 are not in the DAG"):
        dag_to_networkx(dag, steps=[9])


def _read_back(path, suffix):
    """The exported file as a networkx graph, read with each reader's defaults (node ids as ints)."""
    if suffix == ".graphml":
        return nx.read_graphml(path, node_type=int)
    if suffix == ".gexf":
        return nx.read_gexf(path, node_type=int)
    if suffix == ".json":
        opened = gzip.open if path.suffix == ".gz" else open
        with opened(path, "rt") as handle:
            return nx.node_link_graph(json.load(handle))  # the defaults of this networkx
    if suffix in (".dot", ".gv"):
        return _read_dot(path.read_text())
    edges = pq.read_table(path).to_pylist()
    nodes = pq.read_table(node_table_path(path)).to_pylist()
    back = nx.DiGraph()
    back.add_nodes_from((row.pop("node"), {k: v for k, v in row.items() if v is not None}) for row in nodes)
    back.add_edges_from((row.pop("src"), row.pop("dst"), row) for row in edges)
    return back


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_every_format_round_trips_every_attribute(dag, tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(dag_export, "CHUNK_ROWS", 7)  # many chunks: their seams must not show
    graph = dag_to_networkx(dag, steps=[0])
    written = export_dag(dag, tmp_path / f"g{suffix}", steps=[0])
    back = _read_back(written[0], suffix)
    assert set(back.nodes) == set(graph.nodes) and set(back.edges) == set(graph.edges)
    exact = suffix != ".dot" and suffix != ".gv"  # DOT attributes are text
    for node, attrs in graph.nodes(data=True):
        got = dict(back.nodes[node])
        if not exact:  # DOT: text, numbers that read back exactly, and a shape per kind
            assert got.pop("shape") == {"op": "box", "barrier": "diamond", "step-start": "circle"}[attrs["kind"]]
            got = {k: type(attrs[k])(value) if k in attrs else value for k, value in got.items()}
        assert got == attrs, node
        assert all(type(got[k]) is type(v) for k, v in attrs.items())
    for u, v, attrs in graph.edges(data=True):
        got = dict(back.edges[u, v])
        if suffix == ".gexf":
            assert got.pop("id").isdigit()  # GEXF edges carry an id
        if not exact:
            got = {k: type(attrs[k])(value) for k, value in got.items()}
        assert got == attrs
    if exact and suffix != ".parquet":
        assert {k: v for k, v in back.graph.items() if k in graph.graph} == graph.graph or suffix == ".gexf"
    expected_files = {p.name for p in written}
    assert {p.name for p in tmp_path.iterdir()} == expected_files  # no temporary file left
    if suffix == ".parquet":
        assert expected_files == {"g.parquet", "g.nodes.parquet"}
        nodes = pq.read_table(node_table_path(written[0]))
        assert set(nodes.column_names) == {"node"} | {a for names in NODE_ATTRIBUTES.values() for a in names}
        assert pq.read_table(written[0]).column_names == ["src", "dst", "kind", "via", "step"]


def test_gexf_keeps_start_and_end(dag, tmp_path):
    back = nx.read_gexf(export_dag(dag, tmp_path / "g.gexf", steps=[1])[0], node_type=int)
    op = next(a for _, a in back.nodes(data=True) if a["kind"] == "op")
    assert "start" in op and "end" in op and "t_start" not in op and op["end"] >= op["start"]


@pytest.mark.parametrize("suffix", [".graphml", ".json", ".dot", ".gexf"])
def test_gz_compresses_the_same_text(dag, tmp_path, suffix):
    plain = export_dag(dag, tmp_path / f"g{suffix}")[0]
    packed = export_dag(dag, tmp_path / f"g{suffix}.gz")[0]
    assert packed.name == f"g{suffix}.gz" and gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    if suffix == ".graphml":
        assert nx.read_graphml(packed, node_type=int).number_of_nodes() == dag.n_nodes


def test_node_link_json_is_strict_and_lists_edges_for_every_networkx(dag, tmp_path):
    data = json.loads(
        export_dag(dag, tmp_path / "g.json")[0].read_text(),
        parse_constant=lambda name: pytest.fail(f"{name} is not JSON"),
    )
    assert data["edges"] == data["links"] and len(data["edges"]) == len(dag.edges)
    assert len(data["nodes"]) == dag.n_nodes and isinstance(data["nodes"][0]["duration"], float)


def test_to_networkx_takes_workers_as_the_cli_does(dag):
    by_pairs = dag.to_networkx(steps=[1], workers=[(0, 2), (1, None)])
    for workers in ("0:2,1:*", ["0:2", "1:*"], ["0:2", (1, None)]):
        graph = dag.to_networkx(steps=[1], workers=workers)
        assert set(graph.nodes) == set(by_pairs.nodes) and set(graph.edges) == set(by_pairs.edges)
    with pytest.raises(ArgumentError, match="not DP:STAGE"):
        dag.to_networkx(workers=[(0, "x")])
    with pytest.raises(ArgumentError, match="not DP:STAGE"):
        dag.to_networkx(workers="0-1")


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


@pytest.mark.parametrize(
    "name, shown", [("g.xml", ".xml"), ("g.parquet.gz", ".parquet.gz"), ("g", "(no extension)"), ("g.gz", ".gz")]
)
def test_unknown_extension_is_refused(dag, tmp_path, name, shown):
    with pytest.raises(UsageError, match=f"unknown graph format {re.escape(shown)}"):
        export_dag(dag, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_dag(tmp_path):
    trace, meta = write_synth(tmp_path, "ex", dp=2, pp=2, microbatches=4, steps=3, seed=5)
    runner = CliRunner()
    from graphwia.cli.main import app

    out = tmp_path / "g.graphml"
    result = runner.invoke(app, ["export-dag", str(trace), "--out", str(out), "--steps", "1", "2", "--workers", "0:*"])
    assert result.exit_code == 0, result.output
    graph = nx.read_graphml(out, node_type=int)
    ops = [a for _, a in graph.nodes(data=True) if a["kind"] == "op"]
    assert {a["step"] for a in ops} == {1, 2} and {a["dp_rank"] for a in ops} == {0}
    for args, message in (
        (["--out", str(tmp_path / "g.txt")], "unknown graph format"),
        (["--out", str(out), "--workers", "0-1"], "--workers '0-1': not DP:STAGE"),
        (["--out", str(out), "--steps", "8"], "step 8 is not in the trace"),
    ):
        result = runner.invoke(app, ["export-dag", str(trace), *args])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
