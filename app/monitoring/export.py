"""Logged predictions back into training data (``modelserve export``), streamed in batches.

Rows are read from the prediction log (SQLite or PostgreSQL, as ``MODELSERVE_DATABASE_URL``
says) in time order, ``batch`` at a time (SQLite ``fetchmany``, a PostgreSQL server-side
cursor), joined with their labels, and written as they come: memory stays bounded by the
batch whatever the number of rows. Columns are the features in the training order of the
chosen version, then its target (the label; empty until one arrives), then ``prediction``,
``version`` and ``time`` (ISO 8601, UTC). A row logged by a version with other features is
mapped by feature name (a feature it did not have is left empty).
"""

from __future__ import annotations

import csv
import importlib
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from app.registry.metadata import ModelMetadata
from app.registry.store import Registry

EXTRA_COLUMNS = ("prediction", "version", "time")
SELECT = (
    "SELECT p.time, p.version, p.inputs, p.output, f.label FROM predictions p "
    "LEFT JOIN feedback f ON f.prediction_id = p.id"
)
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# (time, version, inputs JSON, output JSON, label JSON or None)
LogRow = tuple[float, str, str, str, str | None]


class ExportError(ValueError):
    """The export cannot be done as asked (bad option, unreadable log, no such model)."""


def parse_since(text: str | None, now: float) -> float | None:
    """``"7d"`` -> the Unix time seven days before ``now``; None for no bound."""
    if text is None:
        return None
    match = DURATION.match(text)
    if match is None:
        raise ExportError(f"--since {text!r}: expected a number and s, m, h, d or w (e.g. 7d)")
    return now - float(match.group(1)) * UNIT_S[match.group(2)]


@dataclass(frozen=True)
class Query:
    model: str
    version: str | None = None
    since: float | None = None
    labeled_only: bool = False

    def sql(self, mark: str) -> tuple[str, list[Any]]:
        where, params = ["p.model = {m}"], list[Any]([self.model])
        if self.version is not None:
            where.append("p.version = {m}")
            params.append(self.version)
        if self.since is not None:
            where.append("p.time >= {m}")
            params.append(self.since)
        if self.labeled_only:
            where.append("f.label IS NOT NULL")
        # Only the constant fragments above are joined; every value is a bound parameter.
        text = f"{SELECT} WHERE {' AND '.join(where)} ORDER BY p.time"
        return text.replace("{m}", mark), params


def _sqlite_batches(path: Path, query: Query, batch: int) -> Iterator[Sequence[LogRow]]:
    if not path.exists():
        raise ExportError(f"no prediction log at {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ExportError(f"cannot open the prediction log {path}: {exc}") from None
    try:
        sql, params = query.sql("?")
        cursor = conn.execute(sql, params)
        while rows := cursor.fetchmany(batch):
            yield rows
    except sqlite3.Error as exc:
        raise ExportError(f"reading the prediction log {path}: {exc}") from None
    finally:
        conn.close()


def _postgres_batches(url: str, query: Query, batch: int) -> Iterator[Sequence[LogRow]]:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn, conn.transaction():
            sql, params = query.sql("%s")
            # A named (server-side) cursor: PostgreSQL sends `batch` rows per round trip.
            with conn.cursor(name="modelserve_export") as cursor:
                cursor.itersize = batch
                cursor.execute(sql, params)
                while rows := cursor.fetchmany(batch):
                    yield rows
    except psycopg.Error as exc:
        raise ExportError(f"reading the prediction log: {exc}") from None


def log_batches(
    database_url: str | None, default_path: Path, query: Query, batch: int = 5000
) -> Iterator[Sequence[LogRow]]:
    """The matching rows in time order, ``batch`` at a time, from the configured backend."""
    if not database_url:
        return _sqlite_batches(default_path, query, batch)
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///")).expanduser()
        return _sqlite_batches(path, query, batch)
    if database_url.startswith(("postgresql://", "postgres://")):
        return _postgres_batches(database_url, query, batch)
    raise ExportError(f"MODELSERVE_DATABASE_URL: unsupported scheme in {database_url[:16]!r}")


class Sink(Protocol):
    def write(self, rows: list[list[Any]]) -> None: ...

    def close(self) -> None: ...


class CsvSink:
    def __init__(self, path: Path, header: list[str]) -> None:
        self._file = path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(header)

    def write(self, rows: list[list[Any]]) -> None:
        self._writer.writerows(rows)

    def close(self) -> None:
        self._file.close()


class ParquetSink:
    """One row group per batch (needs pyarrow, as pandas' Parquet support does)."""

    def __init__(self, path: Path, header: list[str]) -> None:
        try:
            pa = importlib.import_module("pyarrow")
            pq = importlib.import_module("pyarrow.parquet")
        except ImportError:
            raise ExportError("--output *.parquet needs pyarrow: pip install pyarrow") from None
        self._pa, self._pq, self._path, self._header = pa, pq, path, header
        self._writer: Any = None

    def write(self, rows: list[list[Any]]) -> None:
        columns = {name: [row[i] for row in rows] for i, name in enumerate(self._header)}
        if self._writer is None:
            table = self._pa.table(columns)
            self._writer = self._pq.ParquetWriter(self._path, table.schema)
        else:
            table = self._pa.table(columns, schema=self._writer.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _feature_reader(meta: ModelMetadata, names: list[str]) -> Any:
    """inputs (a JSON list in ``meta``'s feature order) -> values in ``names`` order."""
    if meta.feature_names == names:
        return lambda values: values
    index = {n: i for i, n in enumerate(meta.feature_names)}
    picks = [index.get(n) for n in names]
    return lambda values: [None if i is None else values[i] for i in picks]


@dataclass
class Exported:
    rows: int = 0
    labelled: int = 0
    columns: tuple[str, ...] = ()


def export(
    registry: Registry, batches: Iterator[Sequence[LogRow]], meta: ModelMetadata, output: Path
) -> Exported:
    """Write every batch to ``output`` (``.csv`` or ``.parquet``) in ``meta``'s column order."""
    names = meta.feature_names
    header = [*names, meta.target, *EXTRA_COLUMNS]
    clash = set(names) & {meta.target, *EXTRA_COLUMNS}
    if clash:
        raise ExportError(f"feature names {sorted(clash)} clash with the exported columns")
    if output.suffix not in (".csv", ".parquet"):
        raise ExportError(f"--output {output}: the name must end in .csv or .parquet")
    sink: Sink = (
        ParquetSink(output, header) if output.suffix == ".parquet" else CsvSink(output, header)
    )
    readers: dict[str, Any] = {meta.version: _feature_reader(meta, names)}
    done = Exported(columns=tuple(header))
    try:
        for batch in batches:
            out: list[list[Any]] = []
            for time, version, inputs, output_json, label in batch:
                reader = readers.get(version)
                if reader is None:
                    reader = readers[version] = _feature_reader(
                        registry.metadata(meta.name, version), names
                    )
                value = None if label is None else orjson.loads(label)
                stamp = datetime.fromtimestamp(time, UTC).isoformat(timespec="milliseconds")
                prediction = orjson.loads(output_json)["prediction"]
                out.append([*reader(orjson.loads(inputs)), value, prediction, version, stamp])
                done.labelled += label is not None
            sink.write(out)
            done.rows += len(out)
    finally:
        sink.close()
    return done
