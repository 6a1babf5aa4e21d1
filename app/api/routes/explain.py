"""POST /v1/models/{name}:explain (KServe V1) and POST /v2/models/{name}[/versions/{v}]/explain.

The body is :predict's (``{"instances": [...]}``) or /infer's (``inputs`` tensors), decoded by
the same codecs with the same errors, at most ``MODELSERVE_EXPLAIN_MAX_BATCH`` rows; the
version that answers is the one :predict would use. The rows go to ``app.serving.explain``'s
own thread, never the model's batcher; nothing is logged to the prediction log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app import metrics
from app.api.codecs import explain as codec
from app.api.codecs import v2, v2_binary
from app.api.codecs.body import decode_json, read_body
from app.api.codecs.v1 import PredictRequest, decode_instances
from app.api.deps import Services, ServicesDep
from app.api.errors import ErrorResponse
from app.api.routes.v2 import OipRoute
from app.errors import RequestError
from app.logs import request_id_var
from app.serving.runner import ServedModel

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 422, 503, 504)
}


@contextlib.contextmanager
def counted(served: ServedModel) -> Iterator[None]:
    """A refused body counts as an explain request of the version, by reason."""
    try:
        yield
    except RequestError as exc:
        metrics.EXPLAIN_REQUESTS.labels(served.name, served.version, exc.reason).inc()
        raise


v1_router = APIRouter(tags=["explain"])


@v1_router.post(
    "/v1/models/{name}:explain",
    summary="Explain predictions: per original feature, exact (KServe V1)",
    response_model=codec.ExplainResponse,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
        }
    },
)
async def explain_v1(name: str, request: Request, services: ServicesDep) -> Response:
    settings = services.settings
    trace = request.scope.setdefault("state", {})
    served = (await services.inference.route(name, None, trace)).serves
    with counted(served):
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        limit = min(settings.max_batch, settings.explain_max_batch)
        rows = decode_instances(decode_json(body), served.contract, limit)
    trace["instances"] = len(rows)
    explanation = await services.explainers.explain(served, rows)
    return codec.v1_response(served.name, served.version, explanation)


v2_router = APIRouter(prefix="/v2", tags=["explain"], route_class=OipRoute)


async def _explain_v2(
    request: Request, services: Services, name: str, version: str | None
) -> Response:
    settings = services.settings
    trace = request.scope.setdefault("state", {})
    served = (await services.inference.route(name, version, trace)).serves
    with counted(served):
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        payload = v2_binary.decode_body(body, request.headers.get(v2_binary.HEADER))
        limit = min(settings.max_batch, settings.explain_max_batch)
        parsed = v2.decode_infer_request(payload, served.contract, limit, served.has_proba)
    trace["instances"] = len(parsed.rows)
    explanation = await services.explainers.explain(served, parsed.rows)
    request_id = parsed.id if parsed.id is not None else request_id_var.get()
    return codec.v2_response(served.name, served.version, request_id, explanation)


@v2_router.post("/models/{name}/explain", summary="Explain (OIP v2 tensors), served version")
async def explain_v2(name: str, request: Request, services: ServicesDep) -> Response:
    return await _explain_v2(request, services, name, None)


@v2_router.post(
    "/models/{name}/versions/{version}/explain",
    summary="Explain (OIP v2 tensors), pinned version",
)
async def explain_v2_pinned(
    name: str, version: str, request: Request, services: ServicesDep
) -> Response:
    return await _explain_v2(request, services, name, version)


router = APIRouter()
router.include_router(v1_router)
router.include_router(v2_router)
