"""Reading one Kineto trace file in chunks (graphwia.trace.kineto.events).

Whatever the chunk and block sizes, the layout of the JSON (one event per line, compact,
indented, keys in any order) and the phases present, the columns equal those of the file decoded
in one piece; a cut that falls inside an event is detected and the rest decoded whole; errors
name the file and the event or byte of the whole file.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from graphwia.errors import TraceError
from graphwia.synth.generate import synthesize
from graphwia.synth.kineto import write_kineto
from graphwia.trace.kineto import events as kineto_events
from graphwia.trace.kineto.events import Events, read_events
from graphwia.trace.optable import Trace

STACK_FIXTURE = Path(__file__).parent / "data" / "kineto" / "stack" / "rank0.json.gz"
COLUMNS = ("cat", "name", "thread", "pid", "start", "end", "correlation", "external")


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory) -> Path:
    """One rank of a small synthetic GPU job (kernels, flows, record_param_comms), one event per line."""
    frame, meta = synthesize(name="e", dp=2, pp=2, microbatches=4, steps=3, seed=3)
    out = tmp_path_factory.mktemp("events")
    return write_kineto(Trace.from_frame(frame, meta), out, kernels=4)[0]


@pytest.fixture
def whole(monkeypatch):
    """Read a file as one piece (no chunk is ever cut)."""

    def read(path: Path) -> Events:
        with monkeypatch.context() as m:
            m.setattr(kineto_events, "CHUNK_BYTES", 1 << 40)
            return read_events(path)

    return read


@pytest.fixture
def pieces(monkeypatch) -> dict[str, list]:
    """Sizes of the chunks decoded and of the rest, and the chunks whose cut was not between events."""
    seen: dict[str, list] = {"chunks": [], "rest": [], "bad cuts": []}
    chunk, rest = kineto_events._decode_chunk, kineto_events._decode_rest

    def spy_chunk(path, spec, data, before):
        events = chunk(path, spec, data, before)
        seen["chunks" if events is not None else "bad cuts"].append(len(data))
        return events

    def spy_rest(path, spec, data, before, shift):
        seen["rest"].append(len(data))
        return rest(path, spec, data, before, shift)

    monkeypatch.setattr(kineto_events, "_decode_chunk", spy_chunk)
    monkeypatch.setattr(kineto_events, "_decode_rest", spy_rest)
    return seen


def small(monkeypatch, chunk: int = 700, block: int = 4096) -> None:
    monkeypatch.setattr(kineto_events, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(kineto_events, "BLOCK_BYTES", block)


def assert_same(a: Events, b: Events, lazy: bool = False, same_text: bool = True) -> None:
    """Equal columns and metadata (the size of the JSON too when ``same_text``); with ``lazy``, the
    columns read by second passes too."""
    for column in COLUMNS:
        np.testing.assert_array_equal(getattr(a, column), getattr(b, column), err_msg=column)
    assert a.names == b.names and a.thread_codes == b.thread_codes
    assert a.comms == b.comms and a.distributed == b.distributed
    assert (a.base_ns, a.host, a.counts) == (b.base_ns, b.host, b.counts)
    assert a.size == b.size or not same_text
    if lazy:
        for column in ("sequence", "python_id", "python_parent"):
            np.testing.assert_array_equal(getattr(a, column), getattr(b, column), err_msg=column)
        for key in ("thread", "ts", "id"):
            np.testing.assert_array_equal(a.flows[key], b.flows[key], err_msg=f"flows {key}")


def rewrite(source: Path, target: Path, change=None, **dumps) -> Path:
    document = json.loads(source.read_text())
    if change is not None:
        change(document)
    target.write_text(json.dumps(document, **dumps))
    return target


@pytest.mark.parametrize("chunk,block", [(700, 4096), (64, 7), (5000, 1 << 20), (64 << 10, 333)])
def test_chunks_and_blocks_of_any_size(trace_file, whole, pieces, monkeypatch, chunk, block):
    """Events straddle chunks and blocks; the columns (and flows, read by a second pass) are the same."""
    expected = whole(trace_file)
    assert expected.comms and len(expected.flows["id"]) and len(expected.sequence)
    for sizes in pieces.values():
        sizes.clear()
    small(monkeypatch, chunk, block)
    got = read_events(trace_file)
    assert_same(expected, got, lazy=True)
    assert len(pieces["chunks"]) > 5 and not pieces["bad cuts"]
    assert max(pieces["chunks"]) <= max(chunk, 2000) and max(pieces["rest"]) <= max(chunk, 2000) + 200


def test_gzip_is_read_in_blocks(trace_file, whole, tmp_path, monkeypatch):
    target = tmp_path / (trace_file.name + ".gz")
    target.write_bytes(gzip.compress(trace_file.read_bytes()))
    expected = whole(trace_file)
    small(monkeypatch)
    assert_same(expected, read_events(target))


def test_stack_columns_and_real_layout(whole, monkeypatch):
    """A real recorded trace (Kineto's indented layout, Python frames, fwdbwd flows, text pids)."""
    expected = whole(STACK_FIXTURE)
    assert (expected.python_id >= 0).any() and (expected.sequence >= 0).any()
    small(monkeypatch)
    assert_same(expected, read_events(STACK_FIXTURE), lazy=True)


def test_windows_line_breaks(trace_file, whole, pieces, tmp_path, monkeypatch):
    target = tmp_path / "crlf.json"
    target.write_bytes(trace_file.read_bytes().replace(b"\n", b"\r\n"))
    expected = whole(trace_file)
    small(monkeypatch)
    assert_same(expected, read_events(target), same_text=False)
    assert len(pieces["chunks"]) > 5 and not pieces["bad cuts"]


@pytest.mark.parametrize("dumps", [{}, {"separators": (",", ":")}], ids=["compact", "minified"])
def test_compact_json(trace_file, whole, pieces, tmp_path, monkeypatch, dumps):
    target = rewrite(trace_file, tmp_path / "compact.json", **dumps)
    expected = whole(trace_file)
    small(monkeypatch)
    assert_same(expected, read_events(target), same_text=False)
    assert len(pieces["chunks"]) > 5


def test_cut_inside_an_event_is_detected(trace_file, whole, pieces, tmp_path, monkeypatch):
    """Indented JSON with ``args`` first puts ``},`` + newline inside events, and names holding ``}, {``
    put it inside strings: such a cut fails to decode, and the rest is decoded whole."""

    def args_first(document):
        document["traceEvents"] = [{"args": e.pop("args", {}), **e} for e in document["traceEvents"]]
        for e in document["traceEvents"]:
            if e.get("cat") == "cpu_op":
                e["name"] += "}, {"

    indented = rewrite(trace_file, tmp_path / "indented.json", args_first, indent=1)
    compact = rewrite(trace_file, tmp_path / "compact.json", args_first)
    expected = whole(indented)
    small(monkeypatch)
    for path in (indented, compact):
        pieces["bad cuts"].clear()
        assert_same(expected, read_events(path), same_text=False)
        assert pieces["bad cuts"]


def test_phases_outside_the_format_and_keys_in_any_order(trace_file, whole, tmp_path, monkeypatch):
    """An event with an unknown phase or none is no complete event; ``ph`` may come last."""

    def change(document):
        events = document["traceEvents"]
        for k, e in enumerate(events):
            events[k] = {key: e[key] for key in sorted(e, reverse=True)}  # "ph" after the others
        events[len(events) // 2 : len(events) // 2] = [{"ph": "Z", "name": "x", "ts": 1}, {"name": "no phase"}]

    target = rewrite(trace_file, tmp_path / "phases.json", change)
    expected = whole(trace_file)
    small(monkeypatch)
    got = read_events(target)
    expected.counts["events"] += 2
    assert_same(expected, got, same_text=False)


def test_fields_after_the_events_and_a_nested_traceEvents_key(trace_file, whole, tmp_path, monkeypatch):
    def move(document):
        events = document.pop("traceEvents")
        head = {key: document.pop(key) for key in ("distributedInfo", "baseTimeNanoseconds", "host_name")}
        document.update({"traceEvents": events, **head})

    def nested(document):
        document["meta"] = {"traceEvents": []}
        document["traceEvents"] = document.pop("traceEvents")

    expected = whole(trace_file)
    small(monkeypatch)
    for change in (move, nested):
        target = rewrite(trace_file, tmp_path / f"{change.__name__}.json", change)
        assert_same(expected, read_events(target), same_text=False)


def test_truncated_file_after_many_chunks(trace_file, tmp_path, monkeypatch):
    target = tmp_path / "rank9.json"
    data = trace_file.read_bytes()
    target.write_bytes(data[: len(data) * 2 // 3])
    small(monkeypatch)
    with pytest.raises(TraceError, match="truncated") as info:
        read_events(target)
    assert "rank9.json" in str(info.value) and "\n" not in str(info.value)


def test_errors_give_the_byte_and_event_of_the_whole_file(trace_file, tmp_path, monkeypatch):
    data = trace_file.read_bytes()
    at = data.index(b'"ts"', len(data) // 2)
    broken = tmp_path / "broken.json"
    broken.write_bytes(data[:at] + b"#" + data[at + 1 :])
    small(monkeypatch)
    with pytest.raises(TraceError, match=rf"broken.json: not valid JSON: .*\(byte {at}\)"):
        read_events(broken)

    index = len(json.loads(data)["traceEvents"]) * 2 // 3

    def text_ts(document):
        document["traceEvents"][index]["ts"] = "soon"

    wrong = rewrite(trace_file, tmp_path / "wrong.json", text_ts)
    with pytest.raises(TraceError, match=rf"wrong.json: not a PyTorch profiler trace .*\$\.traceEvents\[{index}\]\.ts"):
        read_events(wrong)


def test_missing_file(tmp_path):
    with pytest.raises(TraceError, match="nothing.json: cannot read the trace file"):
        read_events(tmp_path / "nothing.json")


def test_empty_event_list(trace_file, tmp_path):
    target = rewrite(trace_file, tmp_path / "empty.json", lambda d: d.update(traceEvents=[]))
    events = read_events(target)
    assert len(events) == 0 and events.counts == {"events": 0} and events.base_ns > 0  # typed, empty columns
    assert events.start.dtype == np.int64 and events.cat.dtype == np.int8 and not len(events.flows["id"])
