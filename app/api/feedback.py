"""POST /feedback: the true label of a logged prediction, acknowledged once durably stored."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from app import metrics
from app.api.deps import get_registry, get_settings, read_body
from app.errors import ApiError
from app.monitoring import predlog
from app.monitoring.feedback import (
    PREDICTION_ID,
    FeedbackError,
    FeedbackItem,
    judge,
    parse_feedback,
    rows_for,
)
from app.monitoring.records import DuplicateFeedbackError, LogBackendError, StoredPrediction
from app.registry.metadata import Label, ModelMetadata
from app.registry.store import Registry, RegistryError
from app.schemas import ErrorResponse, decode_json

log = logging.getLogger(__name__)
router = APIRouter(tags=["monitoring"])

MAX_FEEDBACK_BODY = 4 * 1024 * 1024


class FeedbackRequest(BaseModel):
    prediction_id: str = Field(..., description="An id from a predict response.")
    label: Label = Field(..., description="The true class (classifiers) or value (regressors).")


class FeedbackResponse(BaseModel):
    accepted: int
    feedback: list[dict[str, Any]] = Field(
        ..., description="Per item: prediction_id, model, version, outcome or error."
    )


_ITEM_SCHEMA = FeedbackRequest.model_json_schema()


@functools.lru_cache(maxsize=64)
def _metadata(registry: Registry, name: str, version: str) -> ModelMetadata:
    return registry.metadata(name, version)  # versions are immutable: safe to cache


def _unavailable(exc: BaseException) -> ApiError:
    metrics.LOG_WRITE_FAILURES.labels(predlog.OP_FEEDBACK).inc()
    log.error("feedback not stored: %s", exc)
    return ApiError(503, "log_unavailable", f"the prediction log is unavailable: {exc}")


async def _find(
    plog: predlog.PredictionLog, items: list[FeedbackItem]
) -> dict[str, StoredPrediction]:
    """Look the predictions up; wait out write buffers (ours, then other workers') on a miss."""
    ids = [item.prediction_id for item in items]
    found = await asyncio.to_thread(plog.backend.get_predictions, ids)
    if len(found) == len(ids):
        return found
    await asyncio.to_thread(plog.flush, 5.0)
    found = await asyncio.to_thread(plog.backend.get_predictions, ids)
    missing = [i for i in ids if i not in found]
    # Another worker may not have committed yet: poll one more flush interval for our ids.
    deadline = time.monotonic() + 2 * plog.flush_interval_s + 0.1
    while missing and all(PREDICTION_ID.match(i) for i in missing):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(plog.flush_interval_s / 3)
        found.update(await asyncio.to_thread(plog.backend.get_predictions, missing))
        missing = [i for i in ids if i not in found]
    return found


async def store_feedback(request: Request, payload: Any) -> list[dict[str, Any]]:
    plog: predlog.PredictionLog | None = request.app.state.prediction_log
    if plog is None:
        raise ApiError(503, "log_disabled", "feedback needs the prediction log, which is disabled")
    items = parse_feedback(payload, get_settings(request).max_batch)
    try:
        found = await _find(plog, items)
        for item in items:
            if item.prediction_id not in found:
                raise FeedbackError(
                    404,
                    "unknown_prediction",
                    f"no logged prediction has id {item.prediction_id!r}",
                    f"{item.field}.prediction_id" if item.field else "prediction_id",
                )
        labelled = await asyncio.to_thread(plog.backend.has_feedback, list(found))
        registry = get_registry(request)
        judged = []
        for item in items:
            _conflict_if(item, item.prediction_id in labelled)
            stored = found[item.prediction_id]
            meta = await asyncio.to_thread(_metadata, registry, stored.model, stored.version)
            judged.append(judge(item, stored, meta))
        await asyncio.to_thread(plog.backend.add_feedback, rows_for(judged))
    except DuplicateFeedbackError as exc:  # lost a race with another request or worker
        _conflict_if(next(i for i in items if i.prediction_id == exc.prediction_id), True)
        raise
    except (sqlite3.Error, LogBackendError, OSError, RegistryError) as exc:
        raise _unavailable(exc) from None
    for j in judged:
        j.count()
    return [j.summary() for j in judged]


def _conflict_if(item: FeedbackItem, conflict: bool) -> None:
    if conflict:
        raise FeedbackError(
            409,
            "duplicate_feedback",
            f"prediction {item.prediction_id!r} already has a label",
            f"{item.field}.prediction_id" if item.field else "prediction_id",
        )


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses={code: {"model": ErrorResponse} for code in (400, 404, 409, 413, 422, 503)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"anyOf": [_ITEM_SCHEMA, {"type": "array", "items": _ITEM_SCHEMA}]},
                    "example": {"prediction_id": "3f0c9d5e6b0a4c1e8f2d7a9b1c3e5f70", "label": 1},
                }
            },
        }
    },
    summary="Report the true label of one or more logged predictions",
)
async def feedback(request: Request) -> Response:
    """Acknowledged (200) only after the labels are committed to the prediction log.

    404: unknown prediction id; 409: already labelled; 422: label outside the model's classes.
    A list is stored all-or-nothing: the first bad item is named in the error's ``field``.
    """
    body = await read_body(request, MAX_FEEDBACK_BODY)
    try:
        stored = await store_feedback(request, decode_json(body))
    except FeedbackError as exc:
        raise ApiError(exc.status, exc.reason, exc.message, field=exc.field) from None
    return Response(
        orjson.dumps({"accepted": len(stored), "feedback": stored}),
        media_type="application/json",
    )
