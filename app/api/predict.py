"""POST /predict (the default model) and POST /v1/models/{name}:predict (KServe V1 shape)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from app import metrics
from app.api.deps import get_manager, get_settings, read_body
from app.errors import ApiError
from app.metrics import ErrorReason
from app.monitoring import predlog
from app.registry.store import ModelNotFoundError
from app.schemas import ErrorResponse, PredictResponse, decode_json, parse_instances
from app.serving.batching import BatchResult, QueueFullError, Rows
from app.serving.manager import ModelNotReadyError
from app.serving.runner import ServedModel

RETRY_AFTER_S = "1"
UNKNOWN_MODEL_LABEL = "_unknown"
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 422, 503, 504)
}


def request_body_doc(feature_names: list[str], example: list[float]) -> dict[str, Any]:
    """OpenAPI request body for the raw-body predict routes, with a real example row."""
    row = example or [0.0] * len(feature_names)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/PredictRequest"},
                    "examples": {
                        "list": {
                            "summary": "One instance, values in feature order",
                            "value": {"instances": [row]},
                        },
                        "object": {
                            "summary": "One instance, values by feature name",
                            "value": {"instances": [dict(zip(feature_names, row, strict=True))]},
                        },
                    },
                }
            },
        }
    }


async def predict_with(request: Request, name: str) -> Response:
    settings = get_settings(request)
    manager = get_manager(request)
    try:
        served = await manager.get_loaded(name, settings.request_timeout_s)
    except ModelNotFoundError as exc:
        # Unknown names share one label value so a client cannot grow the label set.
        raise _counted(
            UNKNOWN_MODEL_LABEL, ApiError(404, ErrorReason.UNKNOWN_MODEL, str(exc), field="model")
        ) from None
    except ModelNotReadyError as exc:
        raise _counted(
            name, ApiError(503, ErrorReason.NOT_READY, str(exc), field="model")
        ) from None
    state = request.state
    state.model, state.version = name, served.version
    try:
        body = await read_body(request, settings.max_body_bytes)
        rows = parse_instances(decode_json(body), served.feature_names, settings.max_batch)
    except ApiError as exc:
        raise _counted(name, exc) from None
    state.instances = len(rows)
    result, prediction_ids = await score_rows(served, rows, settings.request_timeout_s)
    payload: dict[str, Any] = {
        "model": name,
        "version": served.version,
        "predictions": result.predictions,
    }
    if result.probabilities is not None:
        payload["probabilities"] = result.probabilities
    payload["prediction_ids"] = prediction_ids
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        media_type="application/json",
    )


async def score_rows(
    served: ServedModel, rows: Rows, timeout_s: float
) -> tuple[BatchResult, list[str]]:
    """Score validated rows through the model's batcher; every route that predicts uses this.

    Returns the result and one new unique prediction id per row (the rows go to the prediction
    log under those ids, off the request path). Overload, timeout and model
    failures become ApiErrors (503 + Retry-After, 504, 422), counted by reason.
    """
    try:
        async with asyncio.timeout(timeout_s):  # unlike wait_for, no extra task per request
            result = await served.predict(rows)
    except QueueFullError:
        metrics.REQUESTS_REJECTED.labels(served.name).inc()
        raise _counted(
            served.name,
            ApiError(
                503,
                ErrorReason.OVERLOADED,
                f"model {served.name!r} is at capacity; retry shortly",
                headers={"Retry-After": RETRY_AFTER_S},
            ),
        ) from None
    except TimeoutError:
        raise _counted(
            served.name,
            ApiError(504, ErrorReason.TIMEOUT, f"prediction took longer than {timeout_s} s"),
        ) from None
    except (ValueError, TypeError) as exc:
        raise _counted(
            served.name,
            ApiError(422, ErrorReason.MODEL_ERROR, f"the model rejected the input: {exc}"),
        ) from None
    prediction_ids = new_ids(len(rows))
    predlog.record(served.name, served.version, rows, result, prediction_ids)
    return result, prediction_ids


def new_ids(n: int) -> list[str]:
    """``n`` random 128-bit ids as 32 hex digits (one urandom call; uuid4 costs 4× as much)."""
    raw = os.urandom(16 * n).hex()
    return [raw[i : i + 32] for i in range(0, 32 * n, 32)]


def _counted(model: str, exc: ApiError) -> ApiError:
    metrics.PREDICTION_ERRORS.labels(model, exc.reason).inc()
    return exc


def build_router(openapi_extra: dict[str, Any]) -> APIRouter:
    """The predict routes; their request example comes from the default model's features."""
    router = APIRouter(tags=["predict"])

    @router.post(
        "/predict",
        response_model=PredictResponse,
        responses=_ERRORS,
        openapi_extra=openapi_extra,
        summary="Predict with the default model",
    )
    async def predict(request: Request) -> Response:
        return await predict_with(request, get_settings(request).model)

    @router.post(
        "/v1/models/{name}:predict",
        response_model=PredictResponse,
        responses=_ERRORS,
        openapi_extra=openapi_extra,
        summary="Predict with any model that has a production alias",
    )
    async def predict_v1(name: str, request: Request) -> Response:
        return await predict_with(request, name)

    return router
