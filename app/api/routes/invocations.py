"""MLflow's scoring protocol: POST /invocations (the default model) and
/models/{name}/invocations, and the server's GET /ping, /health (200 once every served model is
ready, else 503, as ``mlflow models serve``) and /version."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import PlainTextResponse, Response

from app import __version__
from app.api.codecs import mlflow
from app.api.codecs.body import decode_json, read_body
from app.api.deps import ManagerDep, Services, ServicesDep
from app.errors import RequestError

router = APIRouter(tags=["mlflow scoring protocol"])


class Predictions(BaseModel):
    predictions: list[Any]


class MlflowError(BaseModel):
    error_code: str
    message: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": MlflowError, "description": "MLflow's error shape"}
    for code in (400, 404, 408, 413, 422, 500, 503, 504)
}
_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "example": {"dataframe_split": {"columns": ["x"], "data": [[1.0]]}},
            },
            "text/csv": {"schema": {"type": "string"}, "example": "x\n1.0\n"},
        },
    }
}


async def _invoke(request: Request, services: Services, name: str) -> Response:
    settings, inference = services.settings, services.inference
    trace = request.scope.setdefault("state", {})
    try:
        route = await inference.route(name, None, trace)
        with inference.decoding(route):
            body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
            contract = route.serves.contract
            if _is_csv(request.headers.get("content-type", "")):
                invocation = mlflow.decode_csv(body, contract, settings.max_batch)
            else:
                invocation = mlflow.decode_invocation(
                    decode_json(body), contract, settings.max_batch
                )
        result = await inference.predict(route, invocation.rows, trace)
    except RequestError as exc:
        return mlflow.render(exc)
    # MLflow's body has no place for it: the version that answered (canary or not) is a header.
    headers = {"X-Model-Version": result.version}
    return Response(mlflow.encode(result), media_type="application/json", headers=headers)


def _is_csv(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "text/csv"


async def invocations(request: Request, services: ServicesDep) -> Response:
    return await _invoke(request, services, services.settings.default_model)


async def model_invocations(name: str, request: Request, services: ServicesDep) -> Response:
    return await _invoke(request, services, name)


for _path, _endpoint, _which in (
    ("/invocations", invocations, "the default model"),
    ("/models/{name}/invocations", model_invocations, "any model"),
):
    router.add_api_route(
        _path,
        _endpoint,
        methods=["POST"],
        summary=f"MLflow scoring protocol, {_which}",
        response_model=Predictions,
        responses=_ERRORS,
        openapi_extra=_DOC,
    )


_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"description": "Some served model is not ready yet", "content": {"text/plain": {}}}
}


async def ping(manager: ManagerDep) -> Response:
    # MLflow's scoring server answers a newline; its client reads only the status.
    return PlainTextResponse("\n", status_code=200 if manager.ready else 503)


for _path, _summary in (
    ("/ping", "MLflow's readiness probe: 200 once every served model is ready"),
    ("/health", "The same as /ping (MLflow)"),
):
    router.add_api_route(
        _path,
        ping,
        methods=["GET"],
        response_class=PlainTextResponse,
        responses=_NOT_READY,
        summary=_summary,
    )


@router.get("/version", response_class=PlainTextResponse, summary="The server's version")
async def version() -> Response:
    return PlainTextResponse(__version__)
