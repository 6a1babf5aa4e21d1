"""Open Inference Protocol v2 (the KServe / Triton / MLServer REST protocol).

Inference goes through the same ``score_rows()`` as /predict: same batching, metrics and
prediction log. Errors here use the protocol's shape, ``{"error": "<message>"}``.
A version pinned in the path is served only if the registry has it (loaded on demand).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from app import __version__, metrics
from app.api.deps import get_manager, get_settings, read_body
from app.api.predict import UNKNOWN_MODEL_LABEL, score_rows
from app.api.v2_tensors import (
    PREDICT,
    PREDICT_PROBA,
    PREDICTION_ID,
    output_tensor,
    parse_infer_request,
)
from app.errors import ApiError
from app.logs import request_id_var
from app.metrics import ErrorReason
from app.registry.metadata import ModelMetadata
from app.registry.store import ModelNotFoundError, RegistryError
from app.schemas import decode_json
from app.serving.manager import ModelNotReadyError
from app.serving.runner import ServedModel

_LABEL_TYPES = {int: "INT64", float: "FP64", bool: "BOOL", str: "BYTES"}


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


class OipRoute(APIRoute):
    """Renders every ApiError raised below a v2 route in the protocol's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def oip_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                response = _json({"error": exc.message}, exc.status)
                response.headers.update(exc.headers)
                return response

        return oip_handler


async def _served(request: Request, name: str, version: str | None) -> ServedModel:
    """The model for a v2 path: the served version, or a registry version pinned by path."""
    manager = get_manager(request)
    try:
        if version is None:
            return await manager.get_loaded(name, manager.settings.request_timeout_s)
        return await manager.get_version(name, version)
    except ModelNotFoundError as exc:
        label = name if name in manager.states else UNKNOWN_MODEL_LABEL
        metrics.PREDICTION_ERRORS.labels(label, ErrorReason.UNKNOWN_MODEL).inc()
        raise ApiError(404, ErrorReason.UNKNOWN_MODEL, str(exc)) from None
    except ModelNotReadyError as exc:
        metrics.PREDICTION_ERRORS.labels(name, ErrorReason.NOT_READY).inc()
        raise ApiError(503, ErrorReason.NOT_READY, str(exc)) from None
    except (RegistryError, ValueError, OSError, RuntimeError) as exc:
        metrics.PREDICTION_ERRORS.labels(name, ErrorReason.NOT_READY).inc()
        raise ApiError(
            503, ErrorReason.NOT_READY, f"model {name!r} version {version} cannot be loaded: {exc}"
        ) from None


def model_metadata(served: ServedModel, versions: list[str]) -> dict[str, Any]:
    meta: ModelMetadata = served.metadata
    width = len(meta.features)
    label_type = "FP64"
    if meta.task == "classification" and meta.classes:
        label_type = _LABEL_TYPES.get(type(meta.classes[0]), "BYTES")
    outputs = [{"name": PREDICT, "datatype": label_type, "shape": [-1]}]
    if served.has_proba:
        classes = len(meta.classes or [])
        outputs.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, classes]})
    outputs.append({"name": PREDICTION_ID, "datatype": "BYTES", "shape": [-1]})
    return {
        "name": served.name,
        "versions": versions,
        "platform": "sklearn",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, width]}],
        "outputs": outputs,
    }


async def _metadata(request: Request, name: str, version: str | None) -> Response:
    served = await _served(request, name, version)
    try:
        versions = get_manager(request).registry.versions(name)
    except RegistryError:
        versions = [served.version]
    return _json(model_metadata(served, versions))


async def _model_ready(request: Request, name: str, version: str | None) -> Response:
    served = await _served(request, name, version)
    return _json({"name": name, "version": served.version, "ready": True})


async def _infer(request: Request, name: str, version: str | None) -> Response:
    settings = get_settings(request)
    served = await _served(request, name, version)
    state = request.state
    state.model, state.version = name, served.version
    try:
        body = await read_body(request, settings.max_body_bytes)
        parsed = parse_infer_request(
            decode_json(body), served.feature_names, settings.max_batch, served.has_proba
        )
    except ApiError as exc:
        metrics.PREDICTION_ERRORS.labels(name, exc.reason).inc()
        raise
    state.instances = len(parsed.rows)
    result, prediction_ids = await score_rows(served, parsed.rows, settings.request_timeout_s)
    outputs = []
    for output in parsed.outputs:
        if output == PREDICT:
            outputs.append(output_tensor(PREDICT, np.asarray(result.predictions)))
        elif output == PREDICT_PROBA and result.probabilities is not None:
            outputs.append(output_tensor(PREDICT_PROBA, np.asarray(result.probabilities)))
        elif output == PREDICTION_ID:
            outputs.append(output_tensor(PREDICTION_ID, np.asarray(prediction_ids)))
    return _json(
        {
            "model_name": name,
            "model_version": served.version,
            "id": parsed.id if parsed.id is not None else request_id_var.get(),
            "outputs": outputs,
        }
    )


router = APIRouter(prefix="/v2", tags=["open inference protocol v2"], route_class=OipRoute)


@router.get("", summary="Server metadata")
async def server_metadata() -> Response:
    return _json({"name": "modelserve", "version": __version__, "extensions": []})


@router.get("/health/live", summary="The server is live")
async def server_live() -> Response:
    return _json({"live": True})


@router.get("/health/ready", summary="Every served model is ready (503 until then)")
async def server_ready(request: Request) -> Response:
    ready = get_manager(request).ready
    return _json({"ready": ready}, 200 if ready else 503)


@router.get("/models/{name}", summary="Model metadata (the served version)")
async def metadata(name: str, request: Request) -> Response:
    return await _metadata(request, name, None)


@router.get("/models/{name}/versions/{version}", summary="Model metadata of a version")
async def metadata_version(name: str, version: str, request: Request) -> Response:
    return await _metadata(request, name, version)


@router.get("/models/{name}/ready", summary="The served version is ready")
async def ready(name: str, request: Request) -> Response:
    return await _model_ready(request, name, None)


@router.get("/models/{name}/versions/{version}/ready", summary="The version is ready")
async def ready_version(name: str, version: str, request: Request) -> Response:
    return await _model_ready(request, name, version)


@router.post("/models/{name}/infer", summary="Inference with the served version")
async def infer(name: str, request: Request) -> Response:
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", summary="Inference with a version")
async def infer_version(name: str, version: str, request: Request) -> Response:
    return await _infer(request, name, version)


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
async def unknown(path: str) -> Response:
    raise ApiError(404, "not_found", f"no v2 route /v2/{path}; see GET /v2 and /docs")
