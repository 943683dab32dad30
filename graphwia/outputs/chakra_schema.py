"""The part of the Chakra execution-trace schema graphwia writes, declared here.

A Chakra ET file is a stream of protobuf messages of package
``ChakraProtoMsg``, each preceded by its length as a varint: one
``GlobalMetadata``, then ``Node`` messages. This module declares the messages
as a :class:`~google.protobuf.descriptor_pb2.FileDescriptorProto` and builds
their classes with the protobuf runtime, so no protoc step and no generated
code is involved. Field numbers and enum values are those of the public schema
(``et_def.proto``); ``AttributeProto`` declares only the value kinds graphwia
writes (other kinds of a file written elsewhere survive as unknown fields).

The classes live in a private descriptor pool: they do not clash with another
copy of the schema loaded in the same process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from graphwia.errors import UsageError

__all__ = [
    "AttributeProto",
    "COLLECTIVE_TYPES",
    "COMM_COLL_NODE",
    "COMM_RECV_NODE",
    "COMM_SEND_NODE",
    "COMP_NODE",
    "GlobalMetadata",
    "IOInfo",
    "NODE_TYPES",
    "Node",
    "PACKAGE",
    "SCHEMA_VERSION",
    "attribute_value",
    "encode_delimited",
    "file_descriptor",
    "read_et",
    "split_delimited",
    "varint",
]

PACKAGE = "ChakraProtoMsg"
#: Schema version written in every file's GlobalMetadata.
SCHEMA_VERSION = "0.0.4"

#: NodeType values.
NODE_TYPES = {
    "INVALID_NODE": 0,
    "METADATA_NODE": 1,
    "MEM_LOAD_NODE": 2,
    "MEM_STORE_NODE": 3,
    "COMP_NODE": 4,
    "COMM_SEND_NODE": 5,
    "COMM_RECV_NODE": 6,
    "COMM_COLL_NODE": 7,
}
#: CollectiveCommType values.
COLLECTIVE_TYPES = {
    "ALL_REDUCE": 0,
    "REDUCE": 1,
    "ALL_GATHER": 2,
    "GATHER": 3,
    "SCATTER": 4,
    "BROADCAST": 5,
    "ALL_TO_ALL": 6,
    "REDUCE_SCATTER": 7,
    "REDUCE_SCATTER_BLOCK": 8,
    "BARRIER": 9,
}
COMP_NODE = NODE_TYPES["COMP_NODE"]
COMM_SEND_NODE = NODE_TYPES["COMM_SEND_NODE"]
COMM_RECV_NODE = NODE_TYPES["COMM_RECV_NODE"]
COMM_COLL_NODE = NODE_TYPES["COMM_COLL_NODE"]

_F = descriptor_pb2.FieldDescriptorProto
#: AttributeProto value kinds declared here: (field name, number, type); all in the oneof ``value``.
_ATTRIBUTE_VALUES = (
    ("int32_val", 7, _F.TYPE_INT32),
    ("int64_val", 9, _F.TYPE_INT64),
    ("uint64_val", 13, _F.TYPE_UINT64),
    ("bool_val", 27, _F.TYPE_BOOL),
    ("string_val", 29, _F.TYPE_STRING),
)


def _field(
    message, name: str, number: int, kind: int, *, repeated: bool = False, type_name: str = "", oneof: int | None = None
) -> None:
    field = message.field.add(
        name=name, number=number, type=kind, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    )
    if type_name:
        field.type_name = f".{PACKAGE}.{type_name}"
    if oneof is not None:
        field.oneof_index = oneof


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The declared subset of the Chakra schema (proto3, package ``ChakraProtoMsg``)."""
    proto = descriptor_pb2.FileDescriptorProto(name="graphwia/chakra_et.proto", package=PACKAGE, syntax="proto3")

    attribute = proto.message_type.add(name="AttributeProto")
    _field(attribute, "name", 1, _F.TYPE_STRING)
    _field(attribute, "doc_string", 2, _F.TYPE_STRING)
    attribute.oneof_decl.add(name="value")
    for name, number, kind in _ATTRIBUTE_VALUES:
        _field(attribute, name, number, kind, oneof=0)

    metadata = proto.message_type.add(name="GlobalMetadata")
    _field(metadata, "version", 1, _F.TYPE_STRING)
    _field(metadata, "attr", 2, _F.TYPE_MESSAGE, repeated=True, type_name="AttributeProto")

    for enum_name, values in (("NodeType", NODE_TYPES), ("CollectiveCommType", COLLECTIVE_TYPES)):
        enum = proto.enum_type.add(name=enum_name)
        for name, number in values.items():
            enum.value.add(name=name, number=number)

    io_info = proto.message_type.add(name="IOInfo")
    for number, name in enumerate(("values", "shapes", "types"), start=1):
        _field(io_info, name, number, _F.TYPE_STRING)

    node = proto.message_type.add(name="Node")
    _field(node, "id", 1, _F.TYPE_UINT64)
    _field(node, "name", 2, _F.TYPE_STRING)
    _field(node, "type", 3, _F.TYPE_ENUM, type_name="NodeType")
    _field(node, "ctrl_deps", 4, _F.TYPE_UINT64, repeated=True)
    _field(node, "data_deps", 5, _F.TYPE_UINT64, repeated=True)
    _field(node, "start_time_micros", 6, _F.TYPE_UINT64)
    _field(node, "duration_micros", 7, _F.TYPE_UINT64)
    _field(node, "inputs", 8, _F.TYPE_MESSAGE, type_name="IOInfo")
    _field(node, "outputs", 9, _F.TYPE_MESSAGE, type_name="IOInfo")
    _field(node, "attr", 10, _F.TYPE_MESSAGE, repeated=True, type_name="AttributeProto")
    return proto


def _message_classes() -> dict[str, type[Message]]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_descriptor())
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        for name in ("AttributeProto", "GlobalMetadata", "IOInfo", "Node")
    }


_CLASSES = _message_classes()
# Classes built at run time: annotations name their base, Message (see the docstrings for which message).
AttributeProto: type[Message] = _CLASSES["AttributeProto"]
GlobalMetadata: type[Message] = _CLASSES["GlobalMetadata"]
IOInfo: type[Message] = _CLASSES["IOInfo"]
Node: type[Message] = _CLASSES["Node"]


# -- the length-delimited stream ------------------------------------------------------------


def varint(value: int) -> bytes:
    """``value`` (≥ 0) as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_delimited(payloads: Iterable[bytes]) -> bytes:
    """Serialised messages as one stream, each preceded by its length (varint32)."""
    parts = []
    for payload in payloads:
        if len(payload) >= 1 << 32:
            raise ValueError(f"a message of {len(payload)} bytes does not fit a varint32 length")
        parts.append(varint(len(payload)))
        parts.append(payload)
    return b"".join(parts)


def split_delimited(data: bytes, *, source: str = "<stream>") -> Iterator[bytes]:
    """The serialised messages of a length-delimited stream, in order."""
    pos, end = 0, len(data)
    while pos < end:
        length, shift = 0, 0
        while True:
            if pos >= end or shift > 28:
                raise UsageError(f"{source}: truncated or corrupt length prefix at byte {pos}")
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if pos + length > end:
            raise UsageError(f"{source}: message of {length} bytes at byte {pos} runs past the end of the file")
        yield data[pos : pos + length]
        pos += length


def read_et(path: str | Path) -> tuple[Message, list[Message]]:
    """Read a Chakra ET file: its GlobalMetadata and its nodes, in file order."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    chunks = split_delimited(data, source=str(path))
    first = next(chunks, None)
    if first is None:
        raise UsageError(f"{path}: empty file, expected a GlobalMetadata message first")
    try:
        metadata = GlobalMetadata.FromString(first)
        nodes = [Node.FromString(chunk) for chunk in chunks]
    except DecodeError as exc:
        raise UsageError(f"{path}: not a Chakra execution trace ({exc})") from None
    return metadata, nodes


def attribute_value(attribute: Message) -> bool | int | str | None:
    """The value of an AttributeProto, whichever kind it holds (None when it holds none)."""
    kind = attribute.WhichOneof("value")
    return None if kind is None else getattr(attribute, kind)
