"""CSV rows (a header of feature names, then one row a line) as JSON-typed records.

Each cell becomes its feature's JSON value by the feature's kind, the way pandas' ``read_csv``
would read the column the model was fitted on: an empty cell is missing, ``true``/``false``
(any case, or 1/0, yes/no) a boolean, digits an integer, else a float. A cell that is none of
its kind stays the string it was, so the input contract names the field it refuses, a string
too long for it (MODELSERVE_MAX_STRING_LENGTH) included: the csv module's own field limit
(128 KiB) is raised to the text's length while it is read, so no cell is refused unnamed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from app.errors import ErrorReason, RequestError, quote
from app.registry.metadata import FeatureSpec

_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
_FIELD_LIMIT = threading.Lock()


@contextlib.contextmanager
def _field_limit(at_least: int) -> Iterator[None]:
    """The csv module's field limit (process-wide) at least ``at_least`` while in the block:
    a text cannot hold a field longer than itself, and its size is bounded by the caller."""
    with _FIELD_LIMIT:
        before = csv.field_size_limit()
        csv.field_size_limit(max(before, at_least))
        try:
            yield
        finally:
            csv.field_size_limit(before)


def csv_value(raw: str | None, spec: FeatureSpec) -> Any:
    """A CSV cell as its feature's JSON value (empty: missing), or as-is if it is not one."""
    if raw is None or raw == "":
        return None
    if spec.kind == "string":
        return raw
    if spec.kind == "boolean":
        word = raw.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else raw
    try:
        return (
            int(raw) if spec.kind == "integer" and raw.strip().lstrip("-").isdigit() else float(raw)
        )
    except ValueError:
        return raw


def csv_records(text: str, features: Sequence[FeatureSpec], field: str) -> list[dict[str, Any]]:
    """One record per data line, keyed by the header's names; a cell of a column the model
    does not have stays a string (the contract names it). RequestError for a ragged line."""
    try:
        with _field_limit(len(text)):
            lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:  # a NUL byte, a field over the module's size limit
        raise RequestError(ErrorReason.INVALID_REQUEST, f"is not CSV: {exc}", field=field) from None
    return _records(lines, {f.name: f for f in features}, field)


def _records(
    lines: list[list[str]], specs: dict[str, FeatureSpec], field: str
) -> list[dict[str, Any]]:
    reader = iter(lines)
    header = next(reader, None)
    if not header:
        raise RequestError(ErrorReason.INVALID_REQUEST, "needs a header row", field=field)
    if len(set(header)) != len(header):
        twice = sorted({name for name in header if header.count(name) > 1})
        raise RequestError(
            ErrorReason.INVALID_REQUEST, f"header names {quote(twice[0])} twice", field=field
        )
    records = []
    for i, cells in enumerate(reader):
        if not cells:
            continue  # a blank line, as pandas skips it
        if len(cells) != len(header):
            raise RequestError(
                ErrorReason.INVALID_REQUEST,
                f"has {len(cells)} values for a header of {len(header)}",
                field=f"{field}[{i}]",
            )
        records.append(
            {
                name: csv_value(cell, specs[name]) if name in specs else cell
                for name, cell in zip(header, cells, strict=True)
            }
        )
    return records
