"""OIP raw tensor bytes, written and read from the protocol's text for the tests.

The binary tensor extension (REST) and gRPC's ``raw_input_contents`` / ``raw_output_contents``
carry a tensor the same way: its values flattened in row-major order, little-endian, BOOL as one
byte, BYTES as each element's 4-byte little-endian length then its UTF-8 bytes. The tests build
and read them here, apart from the server's codec, so that a codec bug cannot hide itself.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

NUMPY = {
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4",
    "INT64": "<i8", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "BOOL": "<u1",
}  # fmt: skip


def tensor_bytes(values: Any, datatype: str) -> bytes:
    """``values`` (any nesting) as one raw tensor of ``datatype``."""
    if datatype == "BYTES":
        encoded = [str(v).encode() for v in np.ravel(np.asarray(values, dtype=object))]
        return b"".join(struct.pack("<I", len(e)) + e for e in encoded)
    return np.ascontiguousarray(values).astype(NUMPY[datatype]).tobytes()


def from_bytes(chunk: bytes, datatype: str) -> list[Any]:
    """A raw tensor's values, flat, as Python scalars (BYTES decoded as UTF-8)."""
    if datatype == "BYTES":
        values, offset = [], 0
        while offset < len(chunk):
            (length,) = struct.unpack_from("<I", chunk, offset)
            values.append(chunk[offset + 4 : offset + 4 + length].decode())
            offset += 4 + length
        return values
    array = np.frombuffer(chunk, NUMPY[datatype])
    out: list[Any] = (array.astype(bool) if datatype == "BOOL" else array).tolist()
    return out


def bits(values: list[Any]) -> list[Any]:
    """Floats as their exact bit patterns (NaN-safe, -0.0 distinct), everything else as is."""
    return [v.hex() if isinstance(v, float) else v for v in values]
