"""POST /feedback: the true label of a logged prediction, acknowledged once durably stored."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from app.api.codecs.body import decode_json, read_body
from app.api.deps import ServicesDep
from app.api.errors import ErrorResponse
from app.errors import ErrorReason, RequestError
from app.monitoring.feedback import parse_feedback, submit_feedback
from app.registry.metadata import Label, ModelMetadata
from app.registry.store import Registry

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
async def feedback(request: Request, services: ServicesDep) -> Response:
    """Acknowledged (200) only after the labels are committed to the prediction log.

    404: unknown prediction id; 409: already labelled; 422: label outside the model's classes.
    A list is stored all-or-nothing: the first bad item is named in the error's ``field``.
    """
    settings = services.settings
    body = await read_body(request, MAX_FEEDBACK_BODY, settings.body_timeout_s)
    payload = decode_json(body)
    plog = services.prediction_log
    if plog is None:
        raise RequestError(
            ErrorReason.LOG_DISABLED, "feedback needs the prediction log, which is disabled"
        )
    items = parse_feedback(payload, settings.max_batch)
    metadata = functools.partial(_metadata, services.registry)
    judged = await asyncio.to_thread(submit_feedback, plog, metadata, items)
    summaries = [j.summary() for j in judged]
    return Response(
        orjson.dumps({"accepted": len(summaries), "feedback": summaries}),
        media_type="application/json",
    )
