"""POST /predict (the default model) and POST /v1/models/{name}:predict (KServe V1 shape).

OpenAPI only, in practice: ``app.api.fastpath.PredictFastPath``, a pure-ASGI layer inside the
middlewares, answers every request to these two paths before FastAPI's router sees it (the
router costs more per request than the model call). The routes are registered so that
``/docs`` and ``/openapi.json`` describe the paths with their request and error shapes; their
endpoints call the same ``app.api.codecs.v1.handle`` and would serve the same answers without
the fast path.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.codecs import v1
from app.api.deps import ServicesDep
from app.api.errors import ErrorResponse

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 422, 503, 504)
}


def request_body_doc(feature_names: list[str], example: list[Any]) -> dict[str, Any]:
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


def build_router(openapi_extra: dict[str, Any]) -> APIRouter:
    """The predict routes; their request example comes from the default model's features."""
    router = APIRouter(tags=["predict"])

    async def predict(request: Request, services: ServicesDep) -> Response:
        return await v1.handle(request, services, services.settings.default_model)

    async def predict_v1(name: str, request: Request, services: ServicesDep) -> Response:
        return await v1.handle(request, services, name)

    for path, endpoint, summary in (
        ("/predict", predict, "Predict with the default model"),
        (
            "/v1/models/{name}:predict",
            predict_v1,
            "Predict with any model that has a production alias",
        ),
    ):
        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            response_model=v1.PredictResponse,
            responses=_ERRORS,
            openapi_extra=openapi_extra,
            summary=summary,
        )
    return router
