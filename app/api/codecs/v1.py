"""``{"instances": [...]}`` in, ``{"model", "version", "predictions", ...}`` out.

The body is parsed with orjson and checked by hand: several times cheaper per request than a
pydantic model, and every error names the exact field (``instances[3].mean radius``). The
pydantic models below only describe the same shapes for OpenAPI.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from app.api.codecs.body import decode_json, read_body
from app.api.deps import Services
from app.errors import ErrorReason, RequestError
from app.registry.metadata import Value
from app.results import InferenceResult
from app.serving.contract import InputContract, Rows


class PredictRequest(BaseModel):
    instances: list[list[Value] | dict[str, Value]] = Field(
        ...,
        min_length=1,
        description="Rows to score: each a list of values in feature order, or an object "
        "mapping every feature name to its value: numbers, strings, booleans, or null for a "
        "missing value, as each feature allows (GET /models/{name} lists the features).",
    )


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[Any]
    probabilities: list[list[float]] | None = Field(
        None, description="Per-class probabilities in the order of the model's classes."
    )
    prediction_ids: list[str] = Field(..., description="One unique id per instance.")


def decode_instances(payload: Any, contract: InputContract, max_batch: int) -> Rows:
    """``{"instances": [...]}`` as model input, or a RequestError naming the field."""
    if not isinstance(payload, dict):
        raise RequestError(
            ErrorReason.INVALID_REQUEST, "body must be a JSON object with 'instances'", field="body"
        )
    if "instances" not in payload:
        raise RequestError(ErrorReason.INVALID_REQUEST, "field required", field="instances")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise RequestError(
            ErrorReason.INVALID_REQUEST, "must be a list of instances", field="instances"
        )
    if not instances:
        raise RequestError(ErrorReason.INVALID_REQUEST, "must not be empty", field="instances")
    if len(instances) > max_batch:
        raise RequestError(
            ErrorReason.BATCH_TOO_LARGE,
            f"{len(instances)} instances is over the limit of {max_batch} per request",
            field="instances",
        )
    return contract.records(instances, "instances")


def encode(result: InferenceResult) -> bytes:
    payload: dict[str, Any] = {
        "model": result.model,
        "version": result.version,
        # tolist(): any label type (str, bool, int, float, multi-output) and any memory layout
        "predictions": result.predictions.tolist(),
    }
    if result.probabilities is not None:
        payload["probabilities"] = result.probabilities.tolist()
    payload["prediction_ids"] = result.prediction_ids
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


async def handle(request: Request, services: Services, name: str) -> Response:
    """One /predict or /v1 request: route, decode, predict, encode."""
    return Response(await answer(request, services, name), media_type="application/json")


async def answer(request: Request, services: Services, name: str, body_here: bool = False) -> bytes:
    """``handle``'s JSON body (the lane sends it itself). ``body_here``: the server has the
    whole request body already, so reading it needs no deadline."""
    settings, inference = services.settings, services.inference
    trace = request.scope.setdefault("state", {})
    route = await inference.route(name, None, trace)
    with inference.decoding(route):
        timeout_s = None if body_here else settings.body_timeout_s
        body = await read_body(request, settings.max_body_bytes, timeout_s)
        rows = decode_instances(decode_json(body), route.serves.contract, settings.max_batch)
    result = await inference.predict(route, rows, trace)
    return encode(result)
