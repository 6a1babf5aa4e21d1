"""The MLflow scoring protocol (``/invocations``), so MLflow clients switch without a change.

A JSON body holds exactly one of ``dataframe_split`` (``{"columns", "data"}``; columns
``0, 1, ...``, a frame built from an array, are positions), ``dataframe_records`` (a list of
objects), ``instances`` or ``inputs`` (a list of rows, or an object of columns); ``params`` is
accepted and ignored. The answer is ``{"predictions": [...]}``, the model's ``predict`` output,
as MLflow's sklearn flavour gives.
A ``text/csv`` body (a header row of feature names, then rows) is typed by each feature's kind,
as ``mlflow models serve`` reads it with pandas. Errors answer ``{"error_code", "message"}`` as
MLflow's server does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response

from app.api.codecs.csv_rows import csv_records
from app.api.errors import HEADERS, STATUS
from app.errors import ErrorReason, RequestError
from app.results import InferenceResult
from app.serving.contract import InputContract, Rows

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_ERROR_CODES = {400: "BAD_REQUEST", 404: "RESOURCE_DOES_NOT_EXIST", 413: "BAD_REQUEST"}


@dataclass(frozen=True)
class Invocation:
    rows: Rows


def _bad(field: str, message: str) -> RequestError:
    return RequestError(ErrorReason.INVALID_REQUEST, message, field=field)


def decode_invocation(payload: Any, contract: InputContract, max_batch: int) -> Invocation:
    if not isinstance(payload, dict):
        raise _bad("body", f"body must be a JSON object with one of {', '.join(FORMATS)}")
    given = [key for key in FORMATS if key in payload]
    if len(given) != 1:
        raise _bad("body", f"give exactly one of {', '.join(FORMATS)}; got {given or 'none'}")
    key = given[0]
    records, path = _records(key, payload[key])
    if not records:
        raise _bad(key, "must hold at least one row")
    _check_size(len(records), key, max_batch)
    return Invocation(contract.records(records, path))


def decode_csv(body: bytes, contract: InputContract, max_batch: int) -> Invocation:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _bad("body", f"a text/csv body must be UTF-8: {exc}") from None
    records = csv_records(text, contract.features, "csv")
    if not records:
        raise _bad("csv", "must hold at least one row after its header")
    _check_size(len(records), "csv", max_batch)
    return Invocation(contract.records(records, "csv"))


def _check_size(rows: int, field: str, max_batch: int) -> None:
    if rows > max_batch:
        raise RequestError(
            ErrorReason.BATCH_TOO_LARGE,
            f"{rows} rows is over the limit of {max_batch} per request",
            field=field,
        )


def _records(key: str, value: Any) -> tuple[list[Any], str]:
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise _bad(key, 'must be {"columns": [...], "data": [[...], ...]}')
        columns, data = value.get("columns"), value["data"]
        if columns is None or _positions(columns):
            return data, f"{key}.data"
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise _bad(f"{key}.columns", "must be a list of column names")
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(columns):
                raise _bad(f"{key}.data[{i}]", f"must be a list of {len(columns)} values")
        return [dict(zip(columns, row, strict=True)) for row in data], f"{key}.data"
    if isinstance(value, dict):  # columnar: {"feature": [values], ...}
        lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise _bad(key, "as an object, every value must be a list of one length")
        names = list(value)
        rows = zip(*(value[n] for n in names), strict=True)
        return [dict(zip(names, row, strict=True)) for row in rows], key
    if not isinstance(value, list):
        raise _bad(key, "must be a list of rows")
    return value, key


def _positions(columns: Any) -> bool:
    """``0, 1, ..., k-1``: the labels of a DataFrame built from an array (``pd.DataFrame(X)``,
    what MLflow's client sends for it), which name positions, not features."""
    return (
        isinstance(columns, list)
        and bool(columns)
        and all(type(c) is int for c in columns)
        and columns == list(range(len(columns)))
    )


def encode(result: InferenceResult) -> bytes:
    return orjson.dumps({"predictions": result.predictions.tolist()})


def render(exc: RequestError) -> Response:
    status = STATUS[exc.reason]
    where = f"{exc.field}: " if exc.field and exc.field != "body" else ""
    body = {
        "error_code": _ERROR_CODES.get(status, "INVALID_PARAMETER_VALUE"),
        "message": where + exc.message,
    }
    if status >= 500:
        body["error_code"] = "INTERNAL_ERROR" if status == 500 else "TEMPORARILY_UNAVAILABLE"
    response = Response(orjson.dumps(body), status_code=status, media_type="application/json")
    response.headers.update(HEADERS.get(exc.reason, {}))
    return response
