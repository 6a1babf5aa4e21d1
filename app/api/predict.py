"""POST /predict (the default model) and POST /v1/models/{name}:predict (KServe V1 shape).

``app.api.dispatch`` answers these two paths before FastAPI's router sees them; the routes
here document them in OpenAPI and serve whatever the dispatch passes on. Both call the same
``app.api.codecs.v1.handle``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.codecs import v1
from app.api.deps import get_services
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

    async def predict(request: Request) -> Response:
        services = get_services(request)
        return await v1.handle(request, services, services.settings.model)

    async def predict_v1(name: str, request: Request) -> Response:
        return await v1.handle(request, get_services(request), name)

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
