"""The prediction log: every scored row, written in batches off the request path.

The request path only appends one entry (the rows, the result and the ids, unserialized) to a
bounded in-memory buffer. A writer thread wakes every ``flush_interval_s``, serializes the
buffer and commits it in one transaction, and purges rows older than the retention window now
and then. Nothing here ever raises into a prediction: a full buffer or a failed write (locked
database, full disk) drops those rows, counts ``modelserve_log_write_failures_total{operation}``
and logs. What a crash can lose: the rows still in the buffer (at most one flush interval).

``create_app`` builds one per worker process and hands it to the scoring entry, which calls
``submit()`` for every scored request. A shadow version's rows are written by the off-path
scorer process instead (``app.monitoring.shadowlog``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from app import metrics
from app.config import Settings
from app.metrics import OP_BUFFER_FULL, OP_PREDICTIONS, OP_RETENTION
from app.monitoring.backend import open_backend
from app.monitoring.records import LogBackend, PredictionRow
from app.results import InferenceResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    time: float
    result: InferenceResult
    rows: Any  # a float64 matrix, typed rows' values as sent, an object matrix or a DataFrame


def encode_outputs(
    predictions: npt.NDArray[Any], probabilities: npt.NDArray[Any] | None
) -> list[str]:
    """Each row's ``output`` column: its prediction and probabilities as JSON."""
    preds = predictions.tolist()
    proba_rows = probabilities.tolist() if probabilities is not None else [None] * len(preds)
    return [
        orjson.dumps({"prediction": pred, "probabilities": p}).decode()
        for pred, p in zip(preds, proba_rows, strict=True)
    ]


def _serialize(entry: _Entry) -> list[PredictionRow]:
    return [
        (
            pid,
            entry.time,
            entry.result.model,
            entry.result.version,
            orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            output,
        )
        for pid, row, output in zip(
            entry.result.prediction_ids,
            _rows(entry.rows),
            encode_outputs(entry.result.predictions, entry.result.probabilities),
            strict=True,
        )
    ]


def _rows(rows: Any) -> list[list[Any]]:
    """Inputs in feature order as JSON-ready lists (typed values kept; missing as null)."""
    if isinstance(rows, list):  # typed rows, as sent (missing values already None)
        return rows
    if isinstance(rows, np.ndarray) and rows.dtype != object:
        return list(rows.tolist())
    table = np.asarray(rows, dtype=object)
    return [[None if _missing(v) else v for v in row] for row in table.tolist()]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


class PredictionLog:
    def __init__(
        self,
        backend: LogBackend,
        *,
        flush_interval_s: float = 0.15,
        max_buffered_rows: int = 10_000,
        retention_s: float = 0.0,
        retention_check_s: float = 300.0,
    ) -> None:
        self.backend = backend
        self.flush_interval_s = flush_interval_s
        self.max_buffered_rows = max_buffered_rows
        self.retention_s = retention_s
        self.retention_check_s = retention_check_s
        self._buffer: list[_Entry] = []
        self._buffered_rows = 0
        self._cond = threading.Condition()
        self._submitted = 0  # entries accepted into the buffer, ever
        self._written = 0  # entries the writer has finished with (committed or dropped)
        self._stopping = False
        self._flush_wanted = False
        self._last_purge = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, result: InferenceResult, rows: Any) -> None:
        """Queue a request's rows and answers for writing; never blocks on I/O, never raises."""
        self._append(_Entry(time.time(), result, rows))

    def _append(self, entry: _Entry) -> None:
        ids = entry.result.prediction_ids
        with self._cond:
            if self._buffered_rows + len(ids) > self.max_buffered_rows or self._stopping:
                metrics.LOG_WRITE_FAILURES.labels(OP_BUFFER_FULL).inc(len(ids))
                return
            self._buffer.append(entry)
            self._buffered_rows += len(ids)
            self._submitted += 1

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Block until everything submitted before this call is written; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            target = self._submitted
            self._flush_wanted = True
            self._cond.notify_all()
            while self._written < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return self._written >= target
                self._cond.wait(remaining)
        return True

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered, then close the backend."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.backend.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                # One commit per interval however many requests arrive; flush() cuts it short.
                if not self._stopping and not self._flush_wanted:
                    self._cond.wait(self.flush_interval_s)
                self._flush_wanted = False
                entries, self._buffer, self._buffered_rows = self._buffer, [], 0
                stopping = self._stopping
            if entries:
                self._write(entries)
                with self._cond:
                    self._written += len(entries)
                    self._cond.notify_all()
            self._maybe_purge()
            if stopping:
                return

    def _write(self, entries: list[_Entry]) -> None:
        rows = [row for entry in entries for row in _serialize(entry)]
        try:
            self.backend.write_predictions(rows)
        except Exception as exc:
            metrics.LOG_WRITE_FAILURES.labels(OP_PREDICTIONS).inc(len(rows))
            log.error("prediction log: %d rows not written: %s", len(rows), exc)

    def _maybe_purge(self) -> None:
        if self.retention_s <= 0:
            return
        now = time.time()
        if now - self._last_purge < self.retention_check_s:
            return
        self._last_purge = now
        try:
            deleted = self.backend.purge(now - self.retention_s)
        except Exception as exc:
            metrics.LOG_WRITE_FAILURES.labels(OP_RETENTION).inc()
            log.error("prediction log: retention purge failed: %s", exc)
            return
        if deleted:
            log.info("prediction log: purged %d rows older than retention", deleted)


def from_settings(settings: Settings) -> PredictionLog | None:
    """The prediction log the settings ask for (not started), or None when it is disabled."""
    if not settings.prediction_log_enabled:
        return None
    log.info("prediction log: %s", settings.prediction_log_where)
    backend = open_backend(settings.database_url, settings.prediction_log_path)
    return PredictionLog(
        backend,
        flush_interval_s=settings.prediction_log_flush_ms / 1000,
        max_buffered_rows=settings.prediction_log_buffer_rows,
        retention_s=settings.prediction_log_retention_hours * 3600,
    )
