"""Write the explicit DAG (or part of it) in graph formats other tools read.

:func:`export_dag` writes a selection of the DAG (see :mod:`graphwia.model.graph`
for the node and edge attributes) in the format the file's extension names
(:data:`FORMATS`; a further ``.gz`` compresses a text format with gzip).

The text formats are streamed from the DAG's tables: each chunk of
:data:`CHUNK_ROWS` nodes or edges is laid out column-wise by arrow string
kernels and written before the next is built, so neither a networkx graph nor
the whole text is ever held in memory. Every attribute keeps its name and type
(ints as integers, floats exactly, text as text):

* GraphML and GEXF as networkx writes them (``networkx.read_graphml`` /
  ``read_gexf`` read them back);
* node-link JSON (strict JSON) with the edge list under ``edges`` and again
  under ``links``, so ``networkx.node_link_graph(data)`` reads it with its
  defaults in every networkx from 3.1 (which reads ``links``) on (3.6 reads
  ``edges``);
* DOT: ops as boxes, barriers as diamonds, step sources as circles;
* parquet: the edge table at the path given and the node table (every
  attribute of every node, null where a kind has none) beside it, at
  :func:`node_table_path`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from graphwia.errors import ArgumentError
from graphwia.model.dag import Dag
from graphwia.model.graph import (
    EDGE_ATTRIBUTES,
    NODE_ATTRIBUTES,
    Workers,
    edge_table,
    graph_attributes,
    join_text,
    node_tables,
    numbers_array,
    selected_nodes,
)
from graphwia.utils.io import all_or_nothing, atomic_path, write_gzip

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from graphwia.model.weights import Weights

__all__ = ["CHUNK_ROWS", "FORMATS", "GZIP", "GZIP_LEVEL", "check_format", "export_dag", "node_table_path"]

FORMATS = {
    ".graphml": "GraphML",
    ".gexf": "GEXF",
    ".json": "node-link JSON",
    ".dot": "Graphviz DOT",
    ".gv": "Graphviz DOT",
    ".parquet": "parquet edge table, and the node table beside it",
}
#: Suffix that gzip-compresses a text format (e.g. ``dag.graphml.gz``).
GZIP = ".gz"
#: Nodes or edges laid out at a time: a few tens of MB of text.
CHUNK_ROWS = 100_000
#: Compression level of a ``.gz`` export (fast; the text is repetitive).
GZIP_LEVEL = 3

_SHAPES = {"op": "box", "barrier": "diamond", "step-start": "circle"}
#: GraphML and GEXF names of the column types.
_XML_TYPES = {"int": "long", "float": "double", "text": "string"}


def export_dag(
    dag: Dag,
    path: str | Path,
    *,
    steps: Iterable[int] | int | None = None,
    workers: Workers | None = None,
    weights: Weights | None = None,
) -> list[Path]:
    """Write (part of) ``dag`` to ``path`` atomically in the format its extension names; return the files written.

    ``steps`` and ``workers`` select as in :func:`graphwia.model.graph.selected_nodes`;
    ``weights`` defaults to the observed ones. A parquet export writes two
    files (edges at ``path``, nodes at :func:`node_table_path`), both or neither.
    """
    path = Path(path)
    suffix, compressed = check_format(path)
    keep = selected_nodes(dag, steps, workers)
    nodes, edges = node_tables(dag, keep, weights=weights), edge_table(dag, keep=keep)
    if suffix == ".parquet":
        return _write_parquet(path, nodes, edges)
    lines = {".graphml": _graphml, ".gexf": _gexf, ".json": _node_link, ".dot": _dot, ".gv": _dot}[suffix]
    chunks = (
        text.encode() if isinstance(text, str) else text for text in lines(graph_attributes(dag, keep), nodes, edges)
    )
    if compressed:
        write_gzip(path, chunks, level=GZIP_LEVEL)
    else:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
    return [path]


def check_format(path: str | Path) -> tuple[str, bool]:
    """The format extension of ``path`` (:data:`FORMATS`) and whether it ends in ``.gz``; else :class:`UsageError`."""
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == GZIP
    suffix = (suffixes[-2] if len(suffixes) > 1 else "") if compressed else (suffixes[-1] if suffixes else "")
    if suffix not in FORMATS or (compressed and suffix == ".parquet"):
        shown = "".join(path.suffixes[-2:] if compressed else path.suffixes[-1:]) or "(no extension)"
        raise ArgumentError(
            "path",
            path,
            f"unknown graph format {shown}; use one of {', '.join(FORMATS)}, "
            f"a text format optionally followed by {GZIP}",
        )
    return suffix, compressed


def node_table_path(path: str | Path) -> Path:
    """Where a parquet export of ``path`` (the edge table) puts the node table: ``NAME.nodes.parquet``."""
    path = Path(path)
    return path.with_name(f"{path.name[: -len(path.suffix)]}.nodes{path.suffix}")


# -- parquet ---------------------------------------------------------------------------------


def _write_parquet(path: Path, nodes: list[pa.Table], edges: pa.Table) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    node_table = pa.concat_tables(nodes, promote_options="default")  # a column a kind lacks is null there
    with all_or_nothing():
        for target, table in ((path, edges), (node_table_path(path), node_table)):
            with atomic_path(target) as tmp:
                pq.write_table(table, tmp)
    return [path, node_table_path(path)]


# -- text formats: each yields its text chunk by chunk ------------------------------------------


def _graphml(graph: dict, nodes: list[pa.Table], edges: pa.Table) -> Iterator:
    """GraphML as networkx writes it: typed <key> declarations, then one <node>/<edge> per line."""
    node_keys = _keys(nodes)
    edge_keys = {name: f"e{i}" for i, name in enumerate(EDGE_ATTRIBUTES)}
    yield (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
        'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n'
    )
    for target, keys, tables in (("node", node_keys, nodes), ("edge", edge_keys, [edges])):
        for name, key in keys.items():
            kind = _XML_TYPES[_column_type(tables, name)]
            yield f'  <key id="{key}" for="{target}" attr.name="{name}" attr.type="{kind}" />\n'
    for i, name in enumerate(graph):
        yield f'  <key id="g{i}" for="graph" attr.name="{name}" attr.type="string" />\n'
    yield '  <graph edgedefault="directed">\n'
    for i, value in enumerate(graph.values()):
        yield f'    <data key="g{i}">{escape(value)}</data>\n'

    def data(table, keys):
        return [
            item
            for name in table.column_names
            if name in keys
            for item in (f'<data key="{keys[name]}">', _xml_text(table[name]), "</data>")
        ]

    for table in nodes:
        yield from _rows(table, lambda t: ['    <node id="', _ints(t["node"]), '">', *data(t, node_keys), "</node>\n"])
    yield from _rows(
        edges,
        lambda t: [
            '    <edge source="',
            _ints(t["src"]),
            '" target="',
            _ints(t["dst"]),
            '">',
            *data(t, edge_keys),
            "</edge>\n",
        ],
    )
    yield "  </graph>\n</graphml>\n"


def _gexf(graph: dict, nodes: list[pa.Table], edges: pa.Table) -> Iterator:
    """GEXF 1.2 as networkx writes it; every attribute under its own name (``start``/``end`` too)."""
    node_ids = {name: str(i) for i, name in enumerate(n for n in _keys(nodes) if n != "label")}
    edge_ids = {name: str(i) for i, name in enumerate(EDGE_ATTRIBUTES)}
    yield (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        '<gexf xmlns="http://www.gexf.net/1.2draft" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://www.gexf.net/1.2draft http://www.gexf.net/1.2draft/gexf.xsd" version="1.2">\n'
        "  <meta>\n    <creator>graphwia</creator>\n"
        f"    <description>{escape(json.dumps(graph))}</description>\n  </meta>\n"
        f'  <graph defaultedgetype="directed" mode="static" name={quoteattr(graph["trial_name"])}>\n'
    )
    for target, ids, tables in (("node", node_ids, nodes), ("edge", edge_ids, [edges])):
        yield f'    <attributes mode="static" class="{target}">\n'
        for name, key in ids.items():
            yield f'      <attribute id="{key}" title="{name}" type="{_XML_TYPES[_column_type(tables, name)]}" />\n'
        yield "    </attributes>\n"

    def values(table, ids):
        pieces = [
            item
            for name in table.column_names
            if name in ids
            for item in (f'<attvalue for="{ids[name]}" value="', _xml_text(table[name]), '" />')
        ]
        return ["<attvalues>", *pieces, "</attvalues>"]

    yield "    <nodes>\n"
    for table in nodes:
        yield from _rows(
            table,
            lambda t: [
                '      <node id="',
                _ints(t["node"]),
                '" label="',
                _xml_text(t["label"]),
                '">',
                *values(t, node_ids),
                "</node>\n",
            ],
        )
    yield "    </nodes>\n    <edges>\n"
    number = [0]

    def edge(t):
        ids = np.arange(number[0], number[0] + len(t))
        number[0] += len(t)
        return [
            '      <edge source="',
            _ints(t["src"]),
            '" target="',
            _ints(t["dst"]),
            '" id="',
            _ints(ids),
            '">',
            *values(t, edge_ids),
            "</edge>\n",
        ]

    yield from _rows(edges, edge)
    yield "    </edges>\n  </graph>\n</gexf>\n"


def _node_link(graph: dict, nodes: list[pa.Table], edges: pa.Table) -> Iterator:
    """Strict node-link JSON; the edge list under both "edges" and "links" (see the module docstring)."""
    yield f'{{"directed": true, "multigraph": false, "graph": {json.dumps(graph)}, "nodes": ['
    first = [True]

    def separated(rows):
        for chunk in rows:
            if not first[0]:
                yield b", "
            first[0] = False
            yield chunk

    def node(t):
        return ['{"id": ', _ints(t["node"]), *_json_fields(t, skip="node"), "}, "]

    def edge(t):
        return [
            '{"source": ',
            _ints(t["src"]),
            ', "target": ',
            _ints(t["dst"]),
            *_json_fields(t, skip=("src", "dst")),
            "}, ",
        ]

    for table in nodes:
        yield from separated(_rows(table, node, trim=2))
    for key in ("edges", "links"):
        yield f'], "{key}": ['
        first[0] = True
        yield from separated(_rows(edges, edge, trim=2))
    yield "]}\n"


def _dot(graph: dict, nodes: list[pa.Table], edges: pa.Table) -> Iterator:
    """Graphviz DOT text: ops as boxes, barriers as diamonds, step sources as circles."""
    yield f"digraph {json.dumps(graph['trial_name'] or 'graphwia')} {{\n  rankdir=LR;\n"
    for table in nodes:
        if not len(table):
            continue
        shape = _SHAPES[table["kind"][0].as_py()]

        def node(t: pa.Table, shape: str = shape) -> list:
            return ["  n", _ints(t["node"]), f' [shape="{shape}"', *_dot_fields(t, skip="node"), "];\n"]

        yield from _rows(table, node)
    yield from _rows(
        edges,
        lambda t: [
            "  n",
            _ints(t["src"]),
            " -> n",
            _ints(t["dst"]),
            " [",
            *_dot_fields(t, skip=("src", "dst"), first=True),
            "];\n",
        ],
    )
    yield "}\n"


# -- column-wise text ---------------------------------------------------------------------------


def _rows(table: pa.Table, pieces: Callable[[pa.Table], list], trim: int = 0) -> Iterator:
    """Each chunk of ``table``'s rows as one buffer: the rows' ``pieces`` (text or arrow string arrays) joined.

    ``trim`` bytes are cut from the end of each chunk (a separator after its last row).
    """
    import pyarrow as pa

    for lo in range(0, len(table), CHUNK_ROWS):
        merged: list = []
        for piece in pieces(table.slice(lo, CHUNK_ROWS)):  # adjacent literals as one: fewer pieces, faster joins
            if isinstance(piece, str) and merged and isinstance(merged[-1], str):
                merged[-1] += piece
            else:
                merged.append(piece)
        rows = join_text(*merged)
        rows = rows.combine_chunks() if isinstance(rows, pa.ChunkedArray) else rows
        offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64, count=rows.offset + len(rows) + 1)
        first, last = int(offsets[rows.offset]), int(offsets[-1])
        yield memoryview(rows.buffers()[2])[first : last - trim]


def _text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A column's values as text: integers and text as they are, floats exactly (shortest round-trip digits)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(column, pa.large_string())


def _ints(values) -> pa.Array:
    """Integers (an arrow column or a numpy array) as text."""
    return _text(numbers_array(values) if isinstance(values, np.ndarray) else values)


def _xml_text(column) -> pa.Array:
    """Text safe inside an XML element or a double-quoted attribute."""
    import pyarrow.compute as pc

    text = _text(column)
    if _is_text(column) and pc.any(pc.match_substring_regex(text, '[&<>"]')).as_py():  # rare: one pass to know
        for raw, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;")):
            text = pc.replace_substring(text, raw, escaped)
    return text


def _json_value(column) -> pa.Array:
    """Values as JSON: strings quoted and escaped, floats with a fraction or exponent, NaN/Infinity as null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if _is_text(column):
        text = pc.replace_substring(pc.replace_substring(_text(column), "\\", "\\\\"), '"', '\\"')
        return join_text('"', text, '"')
    text = _text(column)
    if pa.types.is_floating(column.type):
        plain = pc.match_substring_regex(text, r"^-?[0-9]+$")  # "1" for 1.0: JSON would read an int
        text = pc.if_else(plain, join_text(text, ".0"), text)
        finite = pc.is_finite(column)
        text = pc.if_else(finite, text, join_text("null"))
    return text


def _json_fields(table: pa.Table, skip) -> list:
    skip = (skip,) if isinstance(skip, str) else skip
    return [
        item
        for name in table.column_names
        if name not in skip
        for item in (f", {json.dumps(name)}: ", _json_value(table[name]))
    ]


def _dot_fields(table: pa.Table, skip, first: bool = False) -> list:
    """``, name="value"`` for every attribute (values quoted as DOT strings)."""
    skip = (skip,) if isinstance(skip, str) else skip
    names = [name for name in table.column_names if name not in skip]
    pieces = []
    for i, name in enumerate(names):
        lead = "" if first and i == 0 else ", "
        pieces += [f"{lead}{name}=", _json_value(table[name]) if _is_text(table[name]) else _quoted(_text(table[name]))]
    return pieces


def _quoted(text) -> pa.Array:
    return join_text('"', text, '"')


def _is_text(column) -> bool:
    import pyarrow as pa

    return pa.types.is_string(column.type) or pa.types.is_large_string(column.type)


def _keys(nodes: list[pa.Table]) -> dict[str, str]:
    """GraphML key ids of the node attributes, in the order of :data:`NODE_ATTRIBUTES`."""
    names = list(dict.fromkeys(name for attributes in NODE_ATTRIBUTES.values() for name in attributes))
    return {name: f"d{i}" for i, name in enumerate(names)}


def _column_type(tables: list[pa.Table], name: str) -> str:
    """ "int", "float" or "text": the type of column ``name`` in the first table that has it."""
    import pyarrow as pa

    kind = next(table.schema.field(name).type for table in tables if name in table.column_names)
    return "int" if pa.types.is_integer(kind) else "float" if pa.types.is_floating(kind) else "text"
