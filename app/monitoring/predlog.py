"""The prediction log: every scored row, written in batches off the request path.

The request path only appends one entry (the rows, the result and the ids, unserialized) to a
buffer bounded in rows and in bytes (``app.monitoring.sizes.entry_bytes``, an estimate). A
writer thread wakes every ``flush_interval_s``, stacks the buffer into batches
(``app.monitoring.logpack``) and hands them to its sink, which serializes and commits them in
one transaction: in a server, the writer process (``app.monitoring.logwriter``); it purges
rows older than the retention window now and then. An entry's rows and bytes count against the
bounds until the sink is done with it. Nothing here ever raises into
a prediction: a full buffer or a failed write (locked database, full disk) drops those rows and
counts them in ``modelserve_log_write_failures_total{operation}``, every row; the log says when
such a failure starts, at most once a minute while it lasts, and when it ends
(``RepeatedFailureLog``), not once per flush. What a crash can lose: the rows still in the
buffer (at most one flush interval).

``create_app`` builds one per worker process and hands it to the scoring entry, which calls
``submit()`` for every scored request. A shadow version's rows are written by the off-path
scorer process instead (``app.monitoring.shadowlog``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from app import metrics
from app.config import Settings
from app.failure_log import RepeatedFailureLog
from app.metrics import OP_BUFFER_FULL, OP_PREDICTIONS, OP_RETENTION
from app.monitoring.backend import open_backend
from app.monitoring.logpack import Entry, pack
from app.monitoring.logwriter import BackendSink, ProcessSink, Sink
from app.monitoring.records import LogBackend
from app.monitoring.sizes import entry_bytes
from app.results import InferenceResult

log = logging.getLogger(__name__)


class PredictionLog:
    def __init__(
        self,
        backend: LogBackend,
        *,
        sink: Sink | None = None,
        flush_interval_s: float = 0.15,
        max_buffered_rows: int = 10_000,
        max_buffered_bytes: int = 16 * 1024 * 1024,
        retention_s: float = 0.0,
        retention_check_s: float = 300.0,
    ) -> None:
        self.backend = backend
        self.sink = sink if sink is not None else BackendSink(backend)
        self.flush_interval_s = flush_interval_s
        self.max_buffered_rows = max_buffered_rows
        self.max_buffered_bytes = max_buffered_bytes
        self.retention_s = retention_s
        self.retention_check_s = retention_check_s
        self._buffer: list[Entry] = []
        # Rows and bytes of the entries not yet written (buffered, or being written).
        self._buffered_rows = 0
        self._buffered_bytes = 0
        self._cond = threading.Condition()
        self._submitted = 0  # entries accepted into the buffer, ever
        self._written = 0  # entries the writer has finished with (committed or dropped)
        self._stopping = False
        self._flush_wanted = False
        self._last_purge = 0.0
        self._thread: threading.Thread | None = None
        # Each repeating failure is logged at its start, at most once a minute, and its end.
        self._not_written = RepeatedFailureLog(log, "prediction log: rows not written", unit="rows")
        self._dropped = RepeatedFailureLog(
            log, "prediction log: buffer full, rows dropped", unit="rows"
        )
        self._not_purged = RepeatedFailureLog(log, "prediction log: retention purge failed")

    @property
    def buffered(self) -> tuple[int, int]:
        """Rows and estimated bytes submitted and not yet written (or dropped) by the writer."""
        with self._cond:
            return self._buffered_rows, self._buffered_bytes

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, result: InferenceResult, rows: Any) -> None:
        """Queue a request's rows and answers for writing; never blocks on I/O, never raises."""
        self._append(Entry(time.time(), result, rows, entry_bytes(result, rows)))

    def _append(self, entry: Entry) -> None:
        n = len(entry.result.prediction_ids)
        with self._cond:
            rows, size = self._buffered_rows + n, self._buffered_bytes + entry.size
            stopping = self._stopping
            fits = rows <= self.max_buffered_rows and size <= self.max_buffered_bytes
            if fits and not stopping:
                self._buffer.append(entry)
                self._buffered_rows, self._buffered_bytes = rows, size
                self._submitted += 1
        if fits and not stopping:
            self._dropped.succeeded()
            return
        metrics.LOG_WRITE_FAILURES.labels(OP_BUFFER_FULL).inc(n)
        self._dropped.failed(
            "the log is stopping"
            if stopping
            else f"{rows - n} rows ({size - entry.size} bytes) not yet written, the bounds "
            f"are {self.max_buffered_rows} rows and {self.max_buffered_bytes} bytes "
            f"and this request has {n} rows, {entry.size} bytes",
            count=n,
        )

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
        self.sink.close()
        self.backend.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                # One commit per interval however many requests arrive; flush() cuts it short.
                if not self._stopping and not self._flush_wanted:
                    self._cond.wait(self.flush_interval_s)
                self._flush_wanted = False
                entries, self._buffer = self._buffer, []
                stopping = self._stopping
            if entries:
                self._write(entries)
                done = len(entries)
                rows = sum(len(entry.result.prediction_ids) for entry in entries)
                size = sum(entry.size for entry in entries)
                entries = []  # their memory goes before their bytes leave the bound
                with self._cond:
                    self._buffered_rows -= rows
                    self._buffered_bytes -= size
                    self._written += done
                    self._cond.notify_all()
            self._maybe_purge()
            if stopping:
                return

    def _write(self, entries: list[Entry]) -> None:
        try:
            self.sink.write(pack(entries))
        except Exception as exc:
            n = sum(len(entry.result.prediction_ids) for entry in entries)
            metrics.LOG_WRITE_FAILURES.labels(OP_PREDICTIONS).inc(n)
            self._not_written.failed(exc, count=n)
            return
        self._not_written.succeeded()

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
            self._not_purged.failed(exc)
            return
        self._not_purged.succeeded()
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
        sink=ProcessSink(settings.database_url, settings.prediction_log_path),
        flush_interval_s=settings.prediction_log_flush_ms / 1000,
        max_buffered_rows=settings.prediction_log_buffer_rows,
        max_buffered_bytes=settings.prediction_log_buffer_bytes,
        retention_s=settings.prediction_log_retention_hours * 3600,
    )
