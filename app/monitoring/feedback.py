"""Ground truth for logged predictions: parse labels, find their predictions, judge, store.

``submit_feedback()`` is the whole operation over (prediction log, model metadata, items); it
knows nothing of HTTP: every refusal is a ``RequestError`` naming the item's field, and the
route maps its reason to a status.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from app import metrics
from app.errors import ErrorReason, RequestError, short_repr
from app.failure_log import RepeatedFailureLog
from app.metrics import OP_FEEDBACK
from app.monitoring.predlog import PredictionLog
from app.monitoring.records import (
    DuplicateFeedbackError,
    FeedbackRow,
    LogBackendError,
    StoredPrediction,
)
from app.registry.metadata import Label, ModelMetadata
from app.registry.store import RegistryError

log = logging.getLogger(__name__)

# Per worker process: a log that stays unavailable is a line when it starts, at most one a
# minute while it lasts and one when it ends, however many requests are refused (each counted).
_not_stored = RepeatedFailureLog(log, "feedback not stored", unit="requests")
_shadow_not_judged = RepeatedFailureLog(log, "shadow answers not judged", unit="answers")

# Ids the scoring entry hands out (32 hex digits): only these can still sit in a write buffer.
PREDICTION_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_ID_LENGTH = 128


@dataclass(frozen=True)
class FeedbackItem:
    prediction_id: str
    label: Label
    field: str  # "" for a single object, "[i]" in a list: prefix of error fields


@dataclass(frozen=True)
class Judged:
    item: FeedbackItem
    prediction: StoredPrediction
    outcome: str | None
    error: float | None

    def row(self, now: float) -> FeedbackRow:
        label = orjson.dumps(self.item.label).decode()
        return FeedbackRow(self.item.prediction_id, now, label, self.outcome, self.error)

    def count(self) -> None:
        model, version = self.prediction.model, self.prediction.version
        if self.outcome is not None:
            metrics.FEEDBACK.labels(model, version, self.outcome).inc()
        elif self.error is not None:
            metrics.FEEDBACK_ERROR.labels(model, version).observe(self.error)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prediction_id": self.item.prediction_id,
            "model": self.prediction.model,
            "version": self.prediction.version,
        }
        if self.outcome is not None:
            out["outcome"] = self.outcome
        if self.error is not None:
            out["error"] = self.error
        return out


def _error(reason: ErrorReason, message: str, field: str) -> RequestError:
    return RequestError(reason, message, field=field)


def _field(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _parse_one(obj: Any, prefix: str) -> FeedbackItem:
    if not isinstance(obj, dict):
        raise _error(ErrorReason.INVALID_REQUEST, "feedback must be an object", prefix or "body")
    pid = obj.get("prediction_id")
    if not isinstance(pid, str) or not pid or len(pid) > MAX_ID_LENGTH:
        raise _error(
            ErrorReason.INVALID_REQUEST,
            f"prediction_id must be a non-empty string of at most {MAX_ID_LENGTH} characters",
            _field(prefix, "prediction_id"),
        )
    if "label" not in obj:
        raise _error(ErrorReason.INVALID_REQUEST, "label is required", _field(prefix, "label"))
    label = obj["label"]
    if not isinstance(label, int | float | str | bool) or (
        isinstance(label, float) and not math.isfinite(label)
    ):
        raise _error(
            ErrorReason.INVALID_LABEL,
            "label must be a finite number, a string or a boolean",
            _field(prefix, "label"),
        )
    return FeedbackItem(pid, label, prefix)


def parse_feedback(payload: Any, max_items: int) -> list[FeedbackItem]:
    """``{"prediction_id", "label"}`` or a non-empty list of them; ids unique in the request."""
    if isinstance(payload, list):
        if not payload:
            raise _error(ErrorReason.INVALID_REQUEST, "empty feedback list", "body")
        if len(payload) > max_items:
            raise _error(
                ErrorReason.BATCH_TOO_LARGE, f"more than {max_items} feedback items", "body"
            )
        items = [_parse_one(obj, f"[{i}]") for i, obj in enumerate(payload)]
    else:
        items = [_parse_one(payload, "")]
    seen: set[str] = set()
    for item in items:
        if item.prediction_id in seen:
            raise _error(
                ErrorReason.DUPLICATE_FEEDBACK,
                f"prediction {short_repr(item.prediction_id)} is labelled twice in this request",
                _field(item.field, "prediction_id"),
            )
        seen.add(item.prediction_id)
    return items


def _same(label: Label, cls: Label) -> bool:
    if isinstance(label, bool) or isinstance(cls, bool):
        return type(label) is type(cls) and label == cls
    if isinstance(label, int | float) and isinstance(cls, int | float):
        return float(label) == float(cls)
    return str(label) == str(cls)


def judge(item: FeedbackItem, prediction: StoredPrediction, meta: ModelMetadata) -> Judged:
    """Compare the label with what the model predicted; 422 for a label the model cannot have."""
    predicted = orjson.loads(prediction.output)["prediction"]
    field = _field(item.field, "label")
    if isinstance(predicted, list):  # one label cannot judge a row of several outputs
        raise _error(
            ErrorReason.INVALID_LABEL,
            f"{meta.name} version {meta.version} predicts {len(predicted)} values per row "
            "(multi-output): feedback takes one label per prediction, for single-output models",
            field,
        )
    if meta.task == "classification":
        classes = meta.classes or []
        matched = next((c for c in classes if _same(item.label, c)), None)
        if matched is None:
            raise _error(
                ErrorReason.INVALID_LABEL,
                f"label {short_repr(item.label)} is not one of the classes of {meta.name} "
                f"version {meta.version}: {classes}",
                field,
            )
        outcome = "correct" if _same(predicted, matched) else "incorrect"
        return Judged(item, prediction, outcome, None)
    if isinstance(item.label, bool) or not isinstance(item.label, int | float):
        raise _error(
            ErrorReason.INVALID_LABEL, f"{meta.name} is a regressor: label must be a number", field
        )
    return Judged(item, prediction, None, abs(float(item.label) - float(predicted)))


def rows_for(judged: Sequence[Judged]) -> list[FeedbackRow]:
    now = time.time()
    return [j.row(now) for j in judged]


MetadataFn = Callable[[str, str], ModelMetadata]


def submit_feedback(
    plog: PredictionLog, metadata: MetadataFn, items: Sequence[FeedbackItem]
) -> list[Judged]:
    """Judge and durably store labels, all or nothing; blocking (run it in a thread).

    Refusals: ``unknown_prediction``, ``duplicate_feedback`` (also when another worker or
    replica stored a label for the same id first), ``invalid_label``; ``log_unavailable`` when
    the log or the registry cannot be read or written (counted, logged, nothing stored).
    """
    try:
        found = _find(plog, [item.prediction_id for item in items])
        for item in items:
            if item.prediction_id not in found:
                raise _error(
                    ErrorReason.UNKNOWN_PREDICTION,
                    f"no logged prediction has id {short_repr(item.prediction_id)}",
                    _field(item.field, "prediction_id"),
                )
        labelled = plog.backend.has_feedback(list(found))
        judged = []
        for item in items:
            _conflict_if(item, item.prediction_id in labelled)
            stored = found[item.prediction_id]
            judged.append(judge(item, stored, metadata(stored.model, stored.version)))
        shadows = plog.backend.add_feedback(rows_for(judged))
    except DuplicateFeedbackError as exc:  # lost a race with another request or worker
        _conflict_if(next(i for i in items if i.prediction_id == exc.prediction_id), True)
        raise
    except (LogBackendError, RegistryError, OSError, ValueError) as exc:
        metrics.LOG_WRITE_FAILURES.labels(OP_FEEDBACK).inc()
        _not_stored.failed(exc)
        message = f"the prediction log is unavailable: {exc}"
        raise RequestError(ErrorReason.LOG_UNAVAILABLE, message) from None
    _not_stored.succeeded()
    for j in judged:
        j.count()
    _judge_shadows(shadows, metadata, {j.item.prediction_id: j.item for j in judged})
    return judged


def _judge_shadows(
    shadows: list[StoredPrediction], metadata: MetadataFn, items: dict[str, FeedbackItem]
) -> None:
    """Count the labels against the shadows' answers logged before them (classifiers).

    A shadow answer logged later is judged by the off-path scorer as it writes it
    (``app.monitoring.shadowlog``). The label is already stored: a failure here is logged and
    costs only the shadow's count.
    """
    for stored in shadows:
        try:
            judged = judge(items[stored.id], stored, metadata(stored.model, stored.version))
        except (RegistryError, OSError, ValueError, RequestError) as exc:
            _shadow_not_judged.failed(f"{stored.model} version {stored.version}: {exc}")
            continue
        _shadow_not_judged.succeeded()
        if judged.outcome is not None:
            metrics.SHADOW_FEEDBACK.labels(stored.model, stored.version, judged.outcome).inc()


def _find(plog: PredictionLog, ids: list[str]) -> dict[str, StoredPrediction]:
    """Look the predictions up; wait out write buffers (ours, then other workers') on a miss."""
    found = plog.backend.get_predictions(ids)
    if len(found) == len(ids):
        return found
    plog.flush(5.0)
    found = plog.backend.get_predictions(ids)
    missing = [i for i in ids if i not in found]
    # Another worker may not have committed yet: poll one more flush interval for our ids.
    deadline = time.monotonic() + 2 * plog.flush_interval_s + 0.1
    while missing and all(PREDICTION_ID.match(i) for i in missing):
        if time.monotonic() > deadline:
            break
        time.sleep(plog.flush_interval_s / 3)
        found.update(plog.backend.get_predictions(missing))
        missing = [i for i in ids if i not in found]
    return found


def _conflict_if(item: FeedbackItem, conflict: bool) -> None:
    if conflict:
        raise _error(
            ErrorReason.DUPLICATE_FEEDBACK,
            f"prediction {short_repr(item.prediction_id)} already has a label",
            _field(item.field, "prediction_id"),
        )
