"""Moving data between pyarrow and numpy without pyarrow's pandas shim.

pyarrow converts arrays to numpy (``to_numpy``) and Python objects or numpy
arrays to arrow (``pa.array``) through a shim that imports pandas: ~0.3 s,
more than analysing a small trace. The loader and the timeline writer go
through the arrays' buffers instead, with these helpers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["index_array", "text_array", "to_numpy"]


def to_numpy(array) -> np.ndarray:
    """One arrow array as numpy: numbers and booleans from its buffers (nulls as NaN), anything else as objects."""
    import pyarrow as pa

    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        code = "f" if pa.types.is_floating(kind) else "i" if pa.types.is_signed_integer(kind) else "u"
        values = _from_buffer(array.buffers()[1], np.dtype(f"{code}{kind.bit_width // 8}"), array)
    elif pa.types.is_boolean(kind):
        values = _bits(array.buffers()[1], array)
    else:  # text, timestamps, …: the caller decides what they mean
        return np.array(array.to_pylist(), dtype=object)
    if array.null_count:
        values = values.astype(np.float64)
        values[~_bits(array.buffers()[0], array)] = np.nan
    return values


def text_array(text: Sequence[str]):
    """``text`` as an arrow large-string array."""
    import pyarrow as pa

    encoded = [item.encode() for item in text]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return pa.Array.from_buffers(
        pa.large_string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def index_array(index: np.ndarray):
    """Integer positions as an arrow int64 array, for ``take``."""
    import pyarrow as pa

    index = np.ascontiguousarray(index, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(index), [None, pa.py_buffer(index)])


def _from_buffer(buffer, dtype: np.dtype, array) -> np.ndarray:
    if buffer is None:
        return np.zeros(len(array), dtype=dtype)
    return np.frombuffer(buffer, dtype=dtype, count=array.offset + len(array))[array.offset :]


def _bits(buffer, array) -> np.ndarray:
    """An arrow bitmap (validity or booleans) as a numpy bool array."""
    bits = np.unpackbits(np.frombuffer(buffer, dtype=np.uint8), bitorder="little")
    return bits[array.offset : array.offset + len(array)].astype(bool)
