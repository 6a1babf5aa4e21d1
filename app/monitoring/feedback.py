"""Ground truth for logged predictions: parse labels, judge them, count them.

Knows nothing of HTTP: problems are ``FeedbackError`` exceptions naming the item's field,
which the route renders as the project's JSON errors.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from app import metrics
from app.monitoring.records import FeedbackRow, StoredPrediction
from app.registry.metadata import Label, ModelMetadata

# ids score_rows() hands out (uuid4 hex): only these can still be sitting in a write buffer.
PREDICTION_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_ID_LENGTH = 128


class FeedbackError(Exception):
    def __init__(self, status: int, reason: str, message: str, field: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.field = field


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


def _field(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _parse_one(obj: Any, prefix: str) -> FeedbackItem:
    if not isinstance(obj, dict):
        raise FeedbackError(422, "invalid_request", "feedback must be an object", prefix or "body")
    pid = obj.get("prediction_id")
    if not isinstance(pid, str) or not pid or len(pid) > MAX_ID_LENGTH:
        raise FeedbackError(
            422,
            "invalid_request",
            f"prediction_id must be a non-empty string of at most {MAX_ID_LENGTH} characters",
            _field(prefix, "prediction_id"),
        )
    if "label" not in obj:
        raise FeedbackError(422, "invalid_request", "label is required", _field(prefix, "label"))
    label = obj["label"]
    if not isinstance(label, int | float | str | bool) or (
        isinstance(label, float) and not math.isfinite(label)
    ):
        raise FeedbackError(
            422,
            "invalid_label",
            "label must be a finite number, a string or a boolean",
            _field(prefix, "label"),
        )
    return FeedbackItem(pid, label, prefix)


def parse_feedback(payload: Any, max_items: int) -> list[FeedbackItem]:
    """``{"prediction_id", "label"}`` or a non-empty list of them; ids unique in the request."""
    if isinstance(payload, list):
        if not payload:
            raise FeedbackError(422, "invalid_request", "empty feedback list", "body")
        if len(payload) > max_items:
            raise FeedbackError(
                413, "batch_too_large", f"more than {max_items} feedback items", "body"
            )
        items = [_parse_one(obj, f"[{i}]") for i, obj in enumerate(payload)]
    else:
        items = [_parse_one(payload, "")]
    seen: set[str] = set()
    for item in items:
        if item.prediction_id in seen:
            raise FeedbackError(
                409,
                "duplicate_feedback",
                f"prediction {item.prediction_id!r} is labelled twice in this request",
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
    if meta.task == "classification":
        classes = meta.classes or []
        matched = next((c for c in classes if _same(item.label, c)), None)
        if matched is None:
            raise FeedbackError(
                422,
                "invalid_label",
                f"label {item.label!r} is not one of the classes of {meta.name} "
                f"version {meta.version}: {classes}",
                field,
            )
        outcome = "correct" if _same(predicted, matched) else "incorrect"
        return Judged(item, prediction, outcome, None)
    if isinstance(item.label, bool) or not isinstance(item.label, int | float):
        raise FeedbackError(
            422, "invalid_label", f"{meta.name} is a regressor: label must be a number", field
        )
    return Judged(item, prediction, None, abs(float(item.label) - float(predicted)))


def rows_for(judged: Sequence[Judged]) -> list[FeedbackRow]:
    now = time.time()
    return [j.row(now) for j in judged]
