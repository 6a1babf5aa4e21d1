"""A shadow version's answers in the prediction log, written by the off-path scorer process.

The scorer (``app.serving.offpath``) gets ``ShadowWriter`` by name and writes a hop's rows
right after scoring them: in the server, encoding and inserting them cost production's p99 as
much again as its own rows. A shadow row may so be written before its production row, and
before or after that row's label: the insert and ``add_feedback`` take turns and each reads
what the other stored (``LogBackend.write_shadow``), so every label is judged against the
shadow's answer exactly once, here for the labels that came first, by ``/feedback`` for the
rest. Failures to write raise: the scorer reports them and the server counts and logs them
(``app.serving.shadow``). A label that cannot be judged here is logged when that starts, at
most once a minute while it lasts, and when it ends.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter

import orjson

from app.config import Settings
from app.errors import RequestError
from app.failure_log import RepeatedFailureLog
from app.monitoring.backend import open_backend
from app.monitoring.feedback import FeedbackItem, judge
from app.monitoring.logpack import encode_outputs
from app.monitoring.records import ShadowRow, StoredPrediction
from app.registry.metadata import ModelMetadata
from app.registry.store import Registry, RegistryError
from app.results import InferenceResult

log = logging.getLogger(__name__)


class RowsNotWrittenError(Exception):
    """Some commits were refused: ``rows`` rows lost; ``judged``, what the others judged."""

    def __init__(self, rows: int, error: str, judged: Counter[str]) -> None:
        super().__init__(error)
        self.rows = rows
        self.judged = judged


class ShadowWriter:
    """Batch inserts of one scored hop, ``ROWS_PER_COMMIT`` at a time: the scorer runs on idle
    CPU only, and where it is starved mid-statement it holds the log's write lock (which
    production's writer waits on, up to its busy timeout) for as long as a few hundred
    microseconds of work take at its share."""

    ROWS_PER_COMMIT = 64

    def __init__(self, settings: Settings) -> None:
        self.backend = open_backend(settings.database_url, settings.prediction_log_path)
        self._registry = Registry(settings.registry)
        self._not_judged = RepeatedFailureLog(log, "shadow answers not judged", unit="labels")

    def write(self, result: InferenceResult) -> Counter[str]:
        """Store the answers; the outcomes (correct, incorrect) of the labels already there."""
        now = time.time()
        outputs = encode_outputs(result.predictions, result.probabilities)
        model, version = result.model, result.version
        rows: list[ShadowRow] = [
            (pid, now, model, version, output)
            for pid, output in zip(result.prediction_ids, outputs, strict=True)
        ]
        judged: Counter[str] = Counter()
        refused, error = 0, ""
        for start in range(0, len(rows), self.ROWS_PER_COMMIT):
            chunk = rows[start : start + self.ROWS_PER_COMMIT]
            try:
                labels = self.backend.write_shadow(chunk)
            except Exception as exc:
                refused, error = refused + len(chunk), str(exc)
                continue
            if labels:
                judged.update(self._judge(chunk, labels))
        if refused:
            raise RowsNotWrittenError(refused, error, judged)
        return judged

    def _judge(self, rows: list[ShadowRow], labels: list[tuple[str, str]]) -> list[str]:
        """Each label against this shadow's answer for its row (classifiers: an outcome)."""
        by_id = {row[0]: row for row in rows}
        outcomes = []
        for pid, label in labels:
            _, at, model, version, output = by_id[pid]
            try:
                meta = self._metadata(model, version)
                item = FeedbackItem(pid, orjson.loads(label), "")
                judged = judge(item, StoredPrediction(pid, at, model, version, output), meta)
            except (RegistryError, OSError, ValueError, RequestError) as exc:
                self._not_judged.failed(f"{model} version {version}, prediction {pid}: {exc}")
                continue
            self._not_judged.succeeded()
            if judged.outcome is not None:
                outcomes.append(judged.outcome)
        return outcomes

    @functools.lru_cache(maxsize=16)  # noqa: B019 (one writer per scorer process)
    def _metadata(self, model: str, version: str) -> ModelMetadata:
        return self._registry.metadata(model, version)  # versions are immutable

    def close(self) -> None:
        self.backend.close()
