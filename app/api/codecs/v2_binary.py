"""The OIP v2 binary tensor data extension (Triton's and KServe's ``binary_tensor_data``).

tritonclient and KServe's client send tensors as raw bytes by default: the body is a JSON
inference request of ``Inference-Header-Content-Length`` bytes followed by the tensors' bytes,
in the order of the inputs that carry ``"parameters": {"binary_data_size": N}`` (and no
``data``). A tensor's bytes are its row-major values, little-endian in its datatype; a BOOL is
one byte, 0 or 1; a BYTES element is a 4-byte little-endian length and then its bytes.

``decode_body`` gives each binary input the ``data`` list the JSON path reads from the same
values (Python floats, ints, bools and strings), so one validation path (the contract, the
missing-value rule, the batch limit) serves both and answers both alike. ``tensor_bytes`` and
``binary_response`` answer the outputs a request asks for as binary the same way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.responses import Response

from app.api.codecs.body import decode_json
from app.errors import ErrorReason, RequestError, describe_value, quote

HEADER = "Inference-Header-Content-Length"
CONTENT_TYPE = "application/octet-stream"
_DTYPES = {
    name: np.dtype(code)
    for name, code in {
        "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
        "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
        "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
        "BOOL": "<u1",
    }.items()
}  # fmt: skip
_LENGTH_BYTES = 4  # a BYTES element's little-endian length prefix
_SIZE = "parameters.binary_data_size"


def _bad(
    field: str, message: str, reason: ErrorReason = ErrorReason.INVALID_REQUEST
) -> RequestError:
    return RequestError(reason, message, field=field)


def _got(value: Any) -> str:
    small = type(value) in (int, float) and abs(value) < 2**63
    return repr(value) if small else describe_value(value)


def decode_body(body: bytes, header_length: str | None) -> Any:
    """The inference request in ``body``; its binary inputs' values put in their ``data``.

    Without the header the whole body is the JSON request (an input naming binary data then
    finds no bytes to read); with it, the header's bytes are the JSON and the rest the tensors.
    """
    if header_length is None:
        payload = decode_json(body)
        _attach(payload, memoryview(b""), has_header=False)
        return payload
    size = header_length.strip()
    if not (size.isascii() and size.isdigit() and len(size) < 20) or int(size) > len(body):
        raise _bad(
            HEADER,
            f"must be the byte length of the JSON header, at most the body's {len(body)} bytes; "
            f"got {quote(header_length)}",
        )
    end = int(size)
    try:
        payload = decode_json(body[:end])
    except RequestError as exc:
        detail = exc.message.removeprefix("body ").removeprefix("request body ")
        raise RequestError(
            exc.reason, f"the JSON header (the body's first {end} bytes) {detail}", field=HEADER
        ) from None
    _attach(payload, memoryview(body)[end:], has_header=True)
    return payload


def _attach(payload: Any, tail: memoryview, has_header: bool) -> None:
    """Give each binary input its slice of ``tail``, decoded; every byte must be used."""
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, list):
        return  # not a request: the tensor checks say so before any value is read
    offset, last = 0, None
    for i, raw in enumerate(inputs):
        field = f"inputs[{i}]"
        size = _binary_size(raw, field)
        if size is None:
            continue
        if size > len(tail) - offset:
            hint = "" if has_header else f" (no {HEADER} header: the body is all JSON)"
            raise _bad(
                f"{field}.{_SIZE}",
                f"{size} bytes run past the end of the body: {len(tail) - offset} bytes of "
                f"tensor data are left after the inputs before it{hint}",
            )
        chunk = tail[offset : offset + size]
        inputs[i] = {**raw, "data": values(raw, chunk, field, f"{field}.{_SIZE}")}
        offset, last = offset + size, field
    if offset != len(tail):
        where = f"{last}.{_SIZE}" if last is not None else HEADER
        raise _bad(
            where,
            f"{len(tail) - offset} bytes are left over after the tensor data: the binary "
            f"inputs' binary_data_size add up to {offset} of the {len(tail)} bytes after the "
            "JSON header",
        )


def _binary_size(raw: Any, field: str) -> int | None:
    parameters = raw.get("parameters") if isinstance(raw, dict) else None
    if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if type(size) is not int or size < 0:
        raise _bad(f"{field}.{_SIZE}", f"must be a byte count (0 or more), got {_got(size)}")
    if "data" in raw:
        raise _bad(f"{field}.data", f"an input with {_SIZE} takes its values from the bytes")
    return size


def values(raw: dict[str, Any], chunk: memoryview, field: str, where: str) -> list[Any]:
    """Input ``field``'s values from its bytes (``where`` names them: this extension's
    ``binary_data_size``, gRPC's ``raw_input_contents[i]``), as the JSON path reads them; its
    shape must hold exactly as many."""
    datatype = raw.get("datatype")
    if datatype == "BYTES":
        decoded: list[Any] = _strings(chunk, field)
    elif isinstance(datatype, str) and datatype in _DTYPES:
        dtype = _DTYPES[datatype]
        if len(chunk) % dtype.itemsize:
            raise _bad(
                where,
                f"{len(chunk)} bytes are not a whole number of {datatype} values "
                f"({dtype.itemsize} bytes each)",
            )
        array = np.frombuffer(chunk, dtype)
        decoded = _booleans(array, field) if datatype == "BOOL" else array.tolist()
    else:
        return []  # no such datatype: the tensor check names it
    shape: Any = raw.get("shape")
    valid = isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
    if valid and math.prod(shape) != len(decoded):
        raise _bad(
            f"{field}.shape",
            f"{shape} needs {math.prod(shape)} values, but the {len(chunk)} bytes of "
            f"{where.removeprefix(field + '.')} hold {len(decoded)} {datatype} values",
        )
    return decoded


def _booleans(array: npt.NDArray[np.uint8], field: str) -> list[Any]:
    wrong = np.flatnonzero(array > 1)
    if wrong.size:
        k = int(wrong[0])
        raise _bad(
            f"{field}.data[{k}]",
            f"a BOOL is one byte, 0 or 1; got {int(array[k])}",
            ErrorReason.INVALID_VALUE,
        )
    values: list[Any] = array.astype(bool).tolist()
    return values


def _strings(chunk: memoryview, field: str) -> list[str]:
    """BYTES elements: each a 4-byte little-endian length, then that many UTF-8 bytes."""
    strings: list[str] = []
    offset, end = 0, len(chunk)
    while offset < end:
        where = f"{field}.data[{len(strings)}]"
        if end - offset < _LENGTH_BYTES:
            raise _bad(where, f"{end - offset} bytes left, too few for a 4-byte BYTES length")
        length = int.from_bytes(chunk[offset : offset + _LENGTH_BYTES], "little")
        offset += _LENGTH_BYTES
        if length > end - offset:
            raise _bad(
                where,
                f"its length, {length} bytes, runs past the end of the input's "
                f"{end} bytes ({end - offset} left)",
            )
        try:
            strings.append(str(chunk[offset : offset + length], "utf-8"))
        except UnicodeDecodeError as exc:
            raise _bad(
                where, f"must be a UTF-8 string: {exc.reason}", ErrorReason.INVALID_VALUE
            ) from None
        offset += length
    return strings


def flag(parameters: Any, key: str, field: str, default: bool) -> bool:
    """``parameters[key]`` (the request's ``binary_data_output``, an output's ``binary_data``)
    if given, else ``default``; ``field`` names ``parameters``; a non-boolean is refused."""
    if not isinstance(parameters, dict) or key not in parameters:
        return default
    value = parameters[key]
    if type(value) is not bool:
        raise _bad(f"{field}.{key}", f"must be true or false, got {_got(value)}")
    return value


def tensor_bytes(flat: npt.NDArray[Any], datatype: str) -> bytes:
    """An output's values as the extension sends them (strings as the JSON path writes them)."""
    if datatype != "BYTES":
        return flat.astype(_DTYPES[datatype], copy=False).tobytes()
    encoded = [str(v).encode() for v in flat.tolist()]
    return b"".join(len(e).to_bytes(_LENGTH_BYTES, "little") + e for e in encoded)


def binary_response(header: bytes, chunks: list[bytes]) -> Response:
    """The JSON response header, then the binary outputs' bytes in the order it lists them."""
    return Response(
        b"".join([header, *chunks]),
        media_type=CONTENT_TYPE,
        headers={HEADER: str(len(header))},
    )
