"""Open Inference Protocol v2 (the KServe / Triton / MLServer REST protocol).

Inference makes the same calls on ``Inference`` as /predict: same batching, metrics and
prediction log. A version pinned in the path is served only if the registry has it (loaded on
demand). Errors use the protocol's shape, ``{"error": "<message>"}`` (``codecs.v2.render``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from app import __version__
from app.api.codecs import v2 as codec
from app.api.codecs import v2_binary
from app.api.codecs.body import read_body
from app.api.deps import ManagerDep, Services, ServicesDep
from app.errors import ErrorReason, RequestError
from app.logs import request_id_var
from app.registry.store import RegistryError
from app.serving.runner import ServedModel

_LABEL_TYPES = {int: "INT64", float: "FP64", bool: "BOOL", str: "BYTES"}


class OipRoute(APIRoute):
    """Renders every RequestError raised below a v2 route in the protocol's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def oip_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestError as exc:
                return codec.render(exc)

        return oip_handler


def model_metadata(served: ServedModel, versions: list[str]) -> dict[str, Any]:
    meta, example = served.metadata, served.prediction_example
    label_type, shape = "FP64", [-1]
    if example is not None:  # what the model answered its example: the truth
        label_type, shape = codec.datatype_of(example), [-1, *example.shape[1:]]
    elif meta.task == "classification" and meta.classes:
        label_type = _LABEL_TYPES.get(type(meta.classes[0]), "BYTES")
    outputs = [{"name": codec.PREDICT, "datatype": label_type, "shape": shape}]
    if served.has_proba:
        classes = len(meta.classes or [])
        outputs.append({"name": codec.PREDICT_PROBA, "datatype": "FP64", "shape": [-1, classes]})
    outputs.append({"name": codec.PREDICTION_ID, "datatype": "BYTES", "shape": [-1]})
    return {
        "name": served.name,
        "versions": versions,
        "platform": "sklearn",
        "inputs": _inputs(served),
        "outputs": outputs,
    }


def _inputs(served: ServedModel) -> list[dict[str, Any]]:
    """One [N, features] FP64 tensor for numeric models, else one typed tensor per feature."""
    features = served.metadata.features
    if served.contract.numeric:
        return [{"name": "input-0", "datatype": "FP64", "shape": [-1, len(features)]}]
    return [
        {"name": f.name, "datatype": codec.FEATURE_DATATYPES[f.kind], "shape": [-1]}
        for f in features
    ]


async def _metadata(
    request: Request, services: Services, name: str, version: str | None
) -> Response:
    served = await services.inference.resolve(name, version)
    try:
        versions = services.registry.versions(name)
    except RegistryError:
        versions = [served.version]
    return codec.json_response(model_metadata(served, versions))


async def _model_ready(
    request: Request, services: Services, name: str, version: str | None
) -> Response:
    served = await services.inference.resolve(name, version)
    return codec.json_response({"name": name, "version": served.version, "ready": True})


async def infer(
    request: Request, services: Services, name: str, version: str | None, body_here: bool = False
) -> Response:
    """One inference request (``app.api.lane`` calls it too). ``body_here``: the server has the
    whole request body already, so reading it needs no deadline."""
    settings, inference = services.settings, services.inference
    trace = request.scope.setdefault("state", {})
    route = await inference.route(name, version, trace)
    with inference.decoding(route):
        timeout_s = None if body_here else settings.body_timeout_s
        body = await read_body(request, settings.max_body_bytes, timeout_s)
        served = route.serves
        payload = v2_binary.decode_body(body, request.headers.get(v2_binary.HEADER))
        parsed = codec.decode_infer_request(
            payload, served.contract, settings.max_batch, served.has_proba
        )
    result = await inference.predict(route, parsed.rows, trace)
    return codec.encode(parsed, result, request_id_var.get())


router = APIRouter(prefix="/v2", tags=["open inference protocol v2"], route_class=OipRoute)


@router.get("", summary="Server metadata")
async def server_metadata() -> Response:
    extensions = ["binary_tensor_data"]
    return codec.json_response(
        {"name": "modelserve", "version": __version__, "extensions": extensions}
    )


@router.get("/health/live", summary="The server is live")
async def server_live() -> Response:
    return codec.json_response({"live": True})


@router.get("/health/ready", summary="Every served model is ready (503 until then)")
async def server_ready(manager: ManagerDep) -> Response:
    ready = manager.ready
    return codec.json_response({"ready": ready}, 200 if ready else 503)


Handler = Callable[[Request, Services, str, str | None], Coroutine[Any, Any, Response]]
Responses = dict[int | str, dict[str, Any]]
# An inference answer is JSON, or, when outputs are asked for as binary tensor data, a JSON
# header of Inference-Header-Content-Length bytes followed by the tensors' bytes.
_INFER_RESPONSES: Responses = {
    200: {
        "description": "The outputs: JSON, or a JSON header and binary tensor data",
        "content": {v2_binary.CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _add_model_routes(
    suffix: str, method: str, what: str, handler: Handler, responses: Responses | None = None
) -> None:
    """``/models/{name}<suffix>`` (the served version) and its ``/versions/{version}`` twin."""

    async def served(name: str, request: Request, services: ServicesDep) -> Response:
        return await handler(request, services, name, None)

    async def pinned(name: str, version: str, request: Request, services: ServicesDep) -> Response:
        return await handler(request, services, name, version)

    router.add_api_route(
        f"/models/{{name}}{suffix}",
        served,
        methods=[method],
        summary=f"{what}, served version",
        responses=responses,
    )
    router.add_api_route(
        f"/models/{{name}}/versions/{{version}}{suffix}",
        pinned,
        methods=[method],
        summary=f"{what}, pinned version",
        responses=responses,
    )


_add_model_routes("", "GET", "Model metadata", _metadata)
_add_model_routes("/ready", "GET", "The model is ready", _model_ready)
_add_model_routes("/infer", "POST", "Inference", infer, _INFER_RESPONSES)


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
async def unknown(path: str) -> Response:
    raise RequestError(ErrorReason.NOT_FOUND, f"no v2 route /v2/{path}; see GET /v2 and /docs")
