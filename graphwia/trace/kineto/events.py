"""Read one rank's Kineto trace file into numpy columns, a chunk of events at a time.

A trace file is the Chrome trace JSON ``torch.profiler`` exports (``.json`` or ``.json.gz``).
:func:`read_events` streams it: blocks of the file (decompressed on the fly) are cut at event
boundaries into chunks of about :data:`CHUNK_BYTES`, msgspec decodes each chunk into typed
records and the records become column slices at once. Decoding keeps only what the importer
uses: a union tagged by the phase ``ph`` decodes complete events (``X``) into a struct of the
fields read here and every other phase into an empty struct. What only some imports need is
decoded by a second pass on first use: the ``ac2g`` flows (device activity without a correlation
id, :attr:`Events.flows`) and the arguments linking Python frames and autograd nodes (ops inferred
from Python stacks). Small chunks bound memory by the columns plus one block and one chunk, and
their records are still in the CPU cache when their fields become columns (for a 102 MB file,
1.4 s from the records of the whole file, 0.3-0.4 s chunk by chunk; figures of the whole read in
``benchmarks/bench_import.py``).

A chunk ends at a ``}`` followed by ``,`` and a line break (``}, {`` or ``},{`` in compact files), and
decoding proves the cut: such a separator inside a string or a nested value leaves the chunk
invalid JSON. After such a failure, or when the ``traceEvents`` array cannot be located, the
rest of the file is decoded in one piece: same result, but memory is no longer bounded by a chunk.

Times become absolute int64 nanoseconds: ``baseTimeNanoseconds`` + ``ts`` (µs) · 1000.
"""

from __future__ import annotations

import functools
import gc
import gzip
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter
from pathlib import Path
from typing import Any, Union

import msgspec
import numpy as np

from graphwia.errors import TraceError, first_line

__all__ = [
    "BLOCK_BYTES",
    "CAT",
    "CATEGORIES",
    "CHUNK_BYTES",
    "CPU_RANGE_CATS",
    "DEVICE_CATS",
    "DTYPE_BYTES",
    "Events",
    "LAUNCH_CATS",
    "OTHER",
    "message_bytes",
    "read_events",
]

#: Event categories the importer tells apart (``cat`` codes); anything else is OTHER.
CATEGORIES = (
    "user_annotation",
    "gpu_user_annotation",
    "cpu_op",
    "python_function",
    "cuda_runtime",
    "cuda_driver",
    "kernel",
    "gpu_memcpy",
    "gpu_memset",
    "other",
)
CAT = {name: code for code, name in enumerate(CATEGORIES)}
OTHER = CAT["other"]
#: Device activity: runs on a GPU stream, linked to its launch by a correlation id.
DEVICE_CATS = (CAT["kernel"], CAT["gpu_memcpy"], CAT["gpu_memset"])
#: Host-side launches of device activity.
LAUNCH_CATS = (CAT["cuda_runtime"], CAT["cuda_driver"])
#: CPU ranges that can be ops (a program's record_function ranges, operators, Python frames).
CPU_RANGE_CATS = (CAT["user_annotation"], CAT["cpu_op"], CAT["python_function"])

#: Bytes per element of the ``dtype`` names ``record_param_comms`` gives (c10 scalar type names).
DTYPE_BYTES = {
    "Bool": 1,
    "Byte": 1,
    "Char": 1,
    "Float8_e4m3fn": 1,
    "Float8_e4m3fnuz": 1,
    "Float8_e5m2": 1,
    "Float8_e5m2fnuz": 1,
    "Short": 2,
    "UInt16": 2,
    "Half": 2,
    "BFloat16": 2,
    "Int": 4,
    "UInt32": 4,
    "Float": 4,
    "ComplexHalf": 4,
    "Long": 8,
    "UInt64": 8,
    "Double": 8,
    "ComplexFloat": 8,
    "ComplexDouble": 16,
}

#: Bytes of JSON decoded at once: the records of a chunk stay in the CPU cache while they become columns.
CHUNK_BYTES = 64 << 10
#: Bytes read (after decompression) from the file at once.
BLOCK_BYTES = 1 << 20
#: What ends an event inside the traceEvents array, most specific first: Kineto writes one event per
#: line (CR LF on Windows); compact JSON writers separate objects with ", " or ",".
_SEPARATORS = (b"},\n", b"},\r\n", b"}, {", b"},{")
_ARRAY_START = re.compile(rb'"traceEvents"\s*:\s*\[')
#: The phases of the Chrome trace event format.
_PHASES = (
    "B",
    "E",
    "X",
    "i",
    "I",
    "C",
    "b",
    "n",
    "e",
    "S",
    "T",
    "p",
    "F",
    "s",
    "t",
    "f",
    "P",
    "N",
    "O",
    "D",
    "M",
    "V",
    "v",
    "R",
    "c",
    "(",
    ")",
)
_EVENT_INDEX = re.compile(r"\$(?:\.traceEvents)?\[(\d+)\]")
_BYTE_OFFSET = re.compile(r"\(byte (\d+)\)")


# -- what is decoded -------------------------------------------------------------------------


class _Args(msgspec.Struct, frozen=True, gc=False):
    correlation: int | None = -1
    external: int | None = msgspec.field(default=-1, name="External id")
    collective: Any = msgspec.field(default=None, name="Collective name")
    group_desc: Any = msgspec.field(default=None, name="Process Group Description")
    group_ranks: Any = msgspec.field(default=None, name="Process Group Ranks")
    group_size: Any = msgspec.field(default=None, name="Group size")
    src_rank: Any = msgspec.field(default=None, name="Src Rank")
    dst_rank: Any = msgspec.field(default=None, name="Dst Rank")
    in_nelems: Any = msgspec.field(default=None, name="In msg nelems")
    out_nelems: Any = msgspec.field(default=None, name="Out msg nelems")
    dtype: Any = None


_NO_ARGS = _Args()


class _CompleteFields(msgspec.Struct, gc=False):
    cat: str = ""
    name: str = ""
    pid: int | str = 0
    tid: int | str = 0
    ts: float = 0.0
    dur: float = 0.0
    args: _Args = _NO_ARGS


class _Complete(_CompleteFields, tag="X", tag_field="ph", gc=False):
    """A complete event (``ph: X``)."""


class _AnyComplete(_CompleteFields, gc=False):
    """An event of any phase, or none, read as a complete event (chunks with a phase the format lacks)."""

    ph: str = ""


class _StackArgs(msgspec.Struct, frozen=True, gc=False):
    sequence: int | None = msgspec.field(default=-1, name="Sequence number")
    python_id: int | None = msgspec.field(default=-1, name="Python id")
    python_parent: int | None = msgspec.field(default=-1, name="Python parent id")


_NO_STACK_ARGS = _StackArgs()


class _StackFields(msgspec.Struct, gc=False):
    cat: str = ""
    args: _StackArgs = _NO_STACK_ARGS


class _StackComplete(_StackFields, tag="X", tag_field="ph", gc=False):
    """A complete event's arguments that link Python frames and autograd nodes."""


class _AnyStackComplete(_StackFields, gc=False):
    ph: str = ""


class _FlowFields(msgspec.Struct, gc=False):
    cat: str = ""
    pid: int | str = 0
    tid: int | str = 0
    ts: float = 0.0
    id: int | str | None = None


class _FlowEnd(_FlowFields, tag="f", tag_field="ph", gc=False):
    """The end of a flow (``ph: f``): an arrow's head, bound to the event enclosing its time."""


class _AnyFlow(_FlowFields, gc=False):
    ph: str = ""


class _Head(msgspec.Struct, gc=False):
    """The file's fields outside traceEvents that the importer reads."""

    distributedInfo: Any = None
    baseTimeNanoseconds: int = 0
    host_name: str | None = None


class _Pass:
    """The decoders of one pass over a file: the events of one phase as ``struct``, every other phase of
    the format as an empty struct (a union tagged by ``ph``); ``lenient`` (``struct``'s fields and ``ph``)
    for chunks holding an event with a phase outside the format or none."""

    def __init__(self, struct: type[msgspec.Struct], lenient: type[msgspec.Struct]):
        self.struct, self.lenient = struct, lenient
        self.phase = struct.__struct_config__.tag
        skipped = tuple(
            msgspec.defstruct(f"_Skip{i}", [], tag=phase, tag_field="ph", gc=False)
            for i, phase in enumerate(_PHASES)
            if phase != self.phase
        )
        members: tuple[type[msgspec.Struct], ...] = (struct, *skipped)
        # A union of classes known at run time (Any to the type checker; UP007 takes it for an annotation).
        event: Any = Union[members]  # noqa: UP007
        self.chunk: msgspec.json.Decoder[list[Any]] = msgspec.json.Decoder(list[event])
        self.whole: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_file_struct(event))
        # mypy takes list[lenient] for a type expression; lenient is a Struct class chosen at run time.
        self.lenient_chunk: msgspec.json.Decoder[list[Any]] = msgspec.json.Decoder(list[lenient])  # type: ignore[valid-type]
        self.lenient_whole: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_file_struct(lenient))

    def select(self, events: list) -> list:
        """The events of this pass's phase among decoded ones (of either decoder)."""
        if events and type(events[0]) is self.lenient:
            return list(compress(events, map(self.phase.__eq__, map(_PH, events))))
        return list(filter(self.struct.__instancecheck__, events))


def _file_struct(event: Any) -> type:
    return msgspec.defstruct("_File", [("traceEvents", list[event])], bases=(_Head,), kw_only=True, gc=False)


_PH = attrgetter("ph")
_COMPLETE_PASS = _Pass(_Complete, _AnyComplete)
_STACK_PASS = _Pass(_StackComplete, _AnyStackComplete)
_FLOW_PASS = _Pass(_FlowEnd, _AnyFlow)
_HEAD_DECODER = msgspec.json.Decoder(_Head)


# -- the columns -----------------------------------------------------------------------------


@dataclass
class Events:
    """One rank's complete (``ph: X``) events of known categories as columns, and the file's metadata.

    Per event: ``cat`` (codes into :data:`CATEGORIES`), ``name`` (codes into ``names``), ``thread``
    (codes of (pid, tid) pairs, ``thread_codes``), ``pid`` (−1 when not a number), ``start``/``end``
    (absolute ns), ``correlation`` and ``external`` (External id; −1: none). ``comms`` maps an event's
    index to the arguments of a ``record_param_comms`` op (collective, process group, message
    elements and dtype: :func:`message_bytes`). What only some imports need is decoded by
    a second pass over the file on first use: :attr:`sequence`, :attr:`python_id` and
    :attr:`python_parent` (ops inferred from Python stacks), :attr:`flows` (device activity
    without a correlation id).
    """

    path: Path
    cat: np.ndarray
    name: np.ndarray
    names: list[str]
    thread: np.ndarray
    pid: np.ndarray
    start: np.ndarray
    end: np.ndarray
    correlation: np.ndarray
    external: np.ndarray
    comms: dict[int, dict]
    distributed: Any
    base_ns: int
    host: str | None
    size: int = 0
    counts: dict = field(default_factory=dict)
    thread_codes: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.cat)

    @property
    def sequence(self) -> np.ndarray:
        """Autograd sequence number of every event (−1: none)."""
        return self._stack_args["sequence"]

    @property
    def python_id(self) -> np.ndarray:
        """Python id of every Python frame (−1: none)."""
        return self._stack_args["python_id"]

    @property
    def python_parent(self) -> np.ndarray:
        """Python id of the frame enclosing every Python frame (−1: none)."""
        return self._stack_args["python_parent"]

    @functools.cached_property
    def _stack_args(self) -> dict[str, np.ndarray]:
        columns = _StackColumns()
        with _gc_paused():
            _scan(self.path, _STACK_PASS, columns.add)
        return {
            key: np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64) for key, parts in columns.parts.items()
        }

    @functools.cached_property
    def flows(self) -> dict[str, np.ndarray]:
        """The ends of the file's ``ac2g`` flows (launch → device activity arrows): ``thread`` (code; −1
        for a thread without complete events), ``ts`` (ns) and ``id``, decoded by a second pass."""
        flows = _Flows(self.thread_codes)
        with _gc_paused():
            _scan(self.path, _FLOW_PASS, flows.add)
        return {
            "thread": np.array(flows.thread, dtype=np.int32),
            "ts": _ns(np.array(flows.ts, dtype=np.float64), self.base_ns),
            "id": np.array(flows.id, dtype=np.int64),
        }


def read_events(path: str | Path) -> Events:
    """Decode ``path`` (``.json`` or ``.json.gz``) into :class:`Events`, holding at most one block and one
    chunk of it at a time besides the columns; a TraceError names the file when it is missing,
    truncated or not a Kineto trace."""
    path = Path(path)
    columns = _Columns()
    with _gc_paused():
        scanned = _scan(path, _COMPLETE_PASS, columns.add)
    return columns.events(path, scanned)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Building millions of small objects triggers a collection every few hundred: pause it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Codes(dict):
    """Codes of values in order of first appearance: looking a new value up gives it the next code."""

    def __missing__(self, key) -> int:
        code = self[key] = len(self)
        return code


class _Categories(dict):
    """Category codes (:data:`CAT`); a category the importer does not tell apart is OTHER."""

    def __missing__(self, key) -> int:
        self[key] = OTHER
        return OTHER


_KEY_OF, _CAT_OF = attrgetter("cat", "name", "pid", "tid"), attrgetter("cat")
_TS_OF, _DUR_OF = attrgetter("ts"), attrgetter("dur")
_INT_ARGS = tuple((key, attrgetter(f"args.{key}")) for key in ("correlation", "external"))
_STACK_INT_ARGS = tuple((key, attrgetter(f"args.{key}")) for key in ("sequence", "python_id", "python_parent"))
_COMMS_ARGS = (
    "collective",
    "group_desc",
    "group_ranks",
    "group_size",
    "src_rank",
    "dst_rank",
    "in_nelems",
    "out_nelems",
    "dtype",
)


class _Keys(dict):
    """Codes of the (category, name, pid, tid) of events, in order of first appearance, and per code the
    category code, name code (``names``), thread code (``threads``, of (pid, tid)) and pid (−1 when not
    a number): one dictionary look-up per event gives all four."""

    def __init__(self) -> None:
        super().__init__()
        self.categories = _Categories(CAT)
        self.names = _Codes()
        self.threads = _Codes()
        self.cat = np.zeros(256, dtype=np.int8)
        self.name = np.zeros(256, dtype=np.int32)
        self.thread = np.zeros(256, dtype=np.int32)
        self.pid = np.zeros(256, dtype=np.int64)

    def __missing__(self, key: tuple) -> int:
        code = self[key] = len(self)
        if code == len(self.cat):
            self.cat, self.name, self.thread, self.pid = (
                np.concatenate([a, np.zeros_like(a)]) for a in (self.cat, self.name, self.thread, self.pid)
            )
        cat, name, pid, tid = key
        self.cat[code] = self.categories[cat]
        self.name[code] = self.names[name]
        self.thread[code] = self.threads[pid, tid]
        self.pid[code] = pid if isinstance(pid, int) else -1
        return code


class _Columns:
    """Column slices of the complete events of known categories, added a chunk at a time with
    C-level ``map`` over the records (no Python loop per event)."""

    def __init__(self) -> None:
        self.keys = _Keys()
        self.comms: dict[int, dict] = {}
        self.rows = 0
        self.parts: dict[str, list[np.ndarray]] = {key: [] for key in ("key", "ts", "dur", *dict(_INT_ARGS))}

    def add(self, records: list) -> None:
        """Add a chunk's complete events."""
        keys = self.keys
        key = np.fromiter(map(keys.__getitem__, map(_KEY_OF, records)), np.int32, len(records))
        known = keys.cat[key] != OTHER
        if not known.all():  # other categories ("Trace" spans, ...) play no part
            records, key = list(compress(records, known.tolist())), key[known]
        n = len(records)
        parts = self.parts
        parts["key"].append(key)
        parts["ts"].append(np.fromiter(map(_TS_OF, records), np.float64, n))
        parts["dur"].append(np.fromiter(map(_DUR_OF, records), np.float64, n))
        for name, getter in _INT_ARGS:
            parts[name].append(_integers(getter, records))
        comms = keys.names.get("record_param_comms")
        if comms is not None:
            for i in np.flatnonzero(keys.name[key] == comms).tolist():
                args = records[i].args
                self.comms[self.rows + i] = {name: getattr(args, name) for name in _COMMS_ARGS}
        self.rows += n

    def events(self, path: Path, scanned: _Scanned) -> Events:
        """The whole file's columns."""
        dtypes = {"key": np.int32, "ts": np.float64, "dur": np.float64}
        column = {
            name: np.concatenate(parts) if parts else np.zeros(0, dtype=dtypes.get(name, np.int64))
            for name, parts in self.parts.items()
        }
        keys, key = self.keys, column.pop("key")
        start = _ns(column.pop("ts"), scanned.base_ns)
        end = start + np.round(column.pop("dur") * 1000).astype(np.int64)
        return Events(
            path=path,
            cat=keys.cat[key],
            name=keys.name[key],
            names=list(keys.names),
            thread=keys.thread[key],
            pid=keys.pid[key],
            start=start,
            end=end,
            comms=self.comms,
            distributed=scanned.distributed,
            base_ns=scanned.base_ns,
            host=scanned.host,
            size=scanned.size,
            counts={"events": scanned.events},
            thread_codes=dict(keys.threads),
            **column,
        )


class _StackColumns:
    """The arguments of complete events of known categories that link Python frames and autograd nodes,
    a chunk at a time (the same rows as :class:`_Columns`)."""

    def __init__(self) -> None:
        self.categories = _Categories(CAT)
        self.parts: dict[str, list[np.ndarray]] = {key: [] for key in dict(_STACK_INT_ARGS)}

    def add(self, records: list) -> None:
        records = _known(records, self.categories)
        for key, getter in _STACK_INT_ARGS:
            self.parts[key].append(_integers(getter, records))


def _known(records: list, categories: _Categories) -> list:
    """The complete events of known categories (the rows of :class:`_Columns`)."""
    known = np.fromiter(map(categories.__getitem__, map(_CAT_OF, records)), np.int8, len(records)) != OTHER
    return records if known.all() else list(compress(records, known.tolist()))


class _Flows:
    """The ends of ``ac2g`` flows, a chunk at a time."""

    def __init__(self, thread_codes: dict):
        self.thread_codes = thread_codes
        self.thread: list[int] = []
        self.ts: list[float] = []
        self.id: list[int] = []

    def add(self, records: list) -> None:
        for e in records:
            if e.cat == "ac2g":
                self.thread.append(self.thread_codes.get((e.pid, e.tid), -1))
                self.ts.append(e.ts)
                self.id.append(_int_or(e.id))


def _integers(getter: attrgetter, records: list) -> np.ndarray:
    """An integer argument of every event as int64, −1 for an explicit null (the "Python parent id" of
    a root frame)."""
    try:
        return np.fromiter(map(getter, records), np.int64, len(records))
    except TypeError:
        return np.fromiter((-1 if v is None else v for v in map(getter, records)), np.int64, len(records))


def _ns(ts_us: np.ndarray, base: int) -> np.ndarray:
    """Absolute nanoseconds of Kineto ``ts`` values (µs relative to ``baseTimeNanoseconds``)."""
    return np.round(ts_us * 1000).astype(np.int64) + base


def message_bytes(args: dict) -> int | None:
    """Bytes of a ``record_param_comms`` op from its arguments (:attr:`Events.comms`): the larger of its
    input and output message (``In msg nelems``, ``Out msg nelems``; the whole buffer of a
    reduce-scatter or all-gather) times the size of its ``dtype``; None when they are absent or unknown."""
    dtype = args.get("dtype")
    size = DTYPE_BYTES.get(dtype) if isinstance(dtype, str) else None
    counts = [_int_or(args.get(key)) for key in ("in_nelems", "out_nelems")]
    if size is None or max(counts) < 0:
        return None
    return max(counts) * size


def _int_or(value, default: int = -1) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            return default
    return default


# -- the pass over a file --------------------------------------------------------------------


@dataclass
class _Scanned:
    """What a pass found besides the events: the top-level fields, the count of events of every phase
    and the bytes of JSON."""

    distributed: Any = None
    base_ns: int = 0
    host: str | None = None
    events: int = 0
    size: int = 0

    def take(self, head: _Head) -> None:
        """Keep the fields ``head`` (part of the file) gives."""
        if head.distributedInfo is not None:
            self.distributed = head.distributedInfo
        if head.baseTimeNanoseconds:
            self.base_ns = int(head.baseTimeNanoseconds)
        if head.host_name is not None:
            self.host = head.host_name


def _scan(path: Path, spec: _Pass, sink: Callable[[list], None]) -> _Scanned:
    """Decode the events of ``path`` chunk by chunk, giving each chunk's events of ``spec``'s phase to ``sink``.

    The bytes before the traceEvents array are decoded on their own (closed by an empty array); then
    chunks of whole events, each ``[`` + events + ``]``; the rest of the file (the last events and the
    fields after the array) is decoded as ``{"traceEvents": [`` + rest. Without an array to cut (its
    key not found, or found inside another value), the whole file is that rest; after a chunk that
    is no JSON array (a cut inside an event), the rest starts at that chunk.
    """
    scanned = _Scanned()
    with _Blocks(path) as blocks:
        buf, pos, origin, prefix = bytearray(), 0, 0, b""
        for block in blocks:  # find the array
            searched = max(0, len(buf) - 32)
            buf += block
            found = _ARRAY_START.search(buf, searched)
            if found is not None:
                head = _decode_head(buf[: found.start()] + b'"traceEvents":[]}')
                if head is not None:
                    scanned.take(head)
                    pos, prefix = found.end(), b'{"traceEvents":['
                break
        chunked = bool(prefix)
        while chunked:
            while len(buf) - pos > CHUNK_BYTES:
                cut = _cut(buf, pos)
                if cut < 0:
                    break
                events = _decode_chunk(path, spec, b"".join((b"[", memoryview(buf)[pos:cut], b"]")), scanned.events)
                if events is None:  # the cut was not between events: the rest in one piece
                    chunked = False
                    break
                sink(spec.select(events))
                scanned.events += len(events)
                pos = cut + 1
            following = next(blocks, None)
            if following is None:
                break
            del buf[:pos]  # in place: the buffer keeps its memory from block to block
            buf += following
            origin, pos = origin + pos, 0
        for block in blocks:
            buf += block
        rest = _decode_rest(
            path, spec, b"".join((prefix, memoryview(buf)[pos:])), scanned.events, origin + pos - len(prefix)
        )
        scanned.take(rest)
        sink(spec.select(rest.traceEvents))
        scanned.events += len(rest.traceEvents)
        scanned.size = blocks.size
    return scanned


def _cut(buf: bytearray, start: int) -> int:
    """Position of the separator after the last event ending within CHUNK_BYTES of ``start`` (after the
    first one ending beyond, if none does), −1 when ``buf`` holds no separator after ``start``."""
    limit = start + CHUNK_BYTES
    for separator in _SEPARATORS:
        at = buf.rfind(separator, start, limit)
        if at >= 0:
            return at + 1
    beyond = [at for at in (buf.find(separator, limit) for separator in _SEPARATORS) if at >= 0]
    return min(beyond) + 1 if beyond else -1


def _decode_head(data: bytes | bytearray) -> _Head | None:
    """The fields before the traceEvents array; None when those bytes are not the start of an object
    (the array's key was found inside some other value)."""
    try:
        return _HEAD_DECODER.decode(data)
    except msgspec.MsgspecError:
        return None


def _decode_chunk(path: Path, spec: _Pass, data: bytes, before: int) -> list | None:
    """A chunk's events; None when it is not a JSON array (cut inside an event)."""
    try:
        return spec.chunk.decode(data)
    except msgspec.ValidationError:  # (a DecodeError too)
        pass
    except msgspec.DecodeError:
        return None
    try:  # a phase outside the format, or none
        return spec.lenient_chunk.decode(data)
    except msgspec.ValidationError as exc:
        raise _error(path, exc, before, 0) from None
    except msgspec.DecodeError:
        return None


def _decode_rest(path: Path, spec: _Pass, data: bytes, before: int, shift: int):
    """The rest of the file as an object holding its last events; errors name the file, the event
    (index in traceEvents) or the byte (offset in the file's JSON)."""
    try:
        return spec.whole.decode(data)
    except msgspec.ValidationError:  # (a DecodeError too)
        pass
    except msgspec.DecodeError as exc:
        raise _error(path, exc, before, shift) from None
    try:
        return spec.lenient_whole.decode(data)
    except msgspec.MsgspecError as exc:
        raise _error(path, exc, before, shift) from None


def _error(path: Path, exc: msgspec.MsgspecError, before: int, shift: int) -> TraceError:
    """A one-line error naming the file; event indices and byte offsets in msgspec's message are
    those of the whole file (``before`` events and ``shift`` bytes precede the decoded piece)."""
    text = first_line(exc, limit=200)
    if isinstance(exc, msgspec.ValidationError):
        text = _EVENT_INDEX.sub(lambda m: f"$.traceEvents[{before + int(m[1])}]", text)
        return TraceError(f"{path}: not a PyTorch profiler trace ({text})")
    text = _BYTE_OFFSET.sub(lambda m: f"(byte {shift + int(m[1])})", text)
    what = "truncated" if "truncated" in text else "not valid JSON"
    return TraceError(f"{path}: {what}: not a complete trace file ({text})")


class _Blocks:
    """The bytes of a trace file (decompressed when it is gzip) in blocks of BLOCK_BYTES, each a view of
    one buffer valid until the next; ``size`` counts those read. Errors name the file."""

    def __init__(self, path: Path):
        self.path = path
        self.size = 0
        self._buffer = memoryview(bytearray(BLOCK_BYTES))
        try:
            self._file = open(path, "rb")
        except OSError as exc:
            raise TraceError(f"{path}: cannot read the trace file ({exc.strerror or exc})") from None
        self._gzip = self._file.peek(2)[:2] == b"\x1f\x8b"
        self._stream = gzip.GzipFile(fileobj=self._file, mode="rb") if self._gzip else self._file

    def __enter__(self) -> _Blocks:
        return self

    def __exit__(self, *exc) -> None:
        self._stream.close()
        self._file.close()

    def __iter__(self) -> Iterator[memoryview]:
        return self

    def __next__(self) -> memoryview:
        try:
            n = self._stream.readinto(self._buffer)
        except (EOFError, OSError, zlib.error) as exc:
            if not self._gzip:
                raise TraceError(f"{self.path}: cannot read the trace file ({first_line(exc, limit=200)})") from None
            raise TraceError(f"{self.path}: truncated or corrupt gzip file ({first_line(exc, limit=200)})") from None
        if not n:
            raise StopIteration
        self.size += n
        return self._buffer[:n]
