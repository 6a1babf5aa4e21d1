"""The gRPC server: ``inference.GRPCInferenceService`` on ``MODELSERVE_GRPC_PORT``.

A ``grpc.aio`` server in the worker's own event loop, started and stopped by the app's
lifespan (``app.main``): with several workers each binds the same port (grpc sets
``SO_REUSEPORT`` on Linux) and the kernel spreads connections over them. ``ModelInfer`` makes
the calls every codec makes on ``Inference`` (route, decoding, predict), so batching, canary
routing, the prediction log and the model metrics are the REST path's. Each call is counted
(``modelserve_grpc_requests``, by method and code) and logged as the HTTP access log does;
a ``RequestError`` answers its reason's code (``app.api.errors.GRPC_STATUS``) and the REST
message naming the field. ``x-request-id`` and ``x-routing-key`` metadata work as the headers.
On shutdown new calls are refused and those in flight get ``request_timeout_s`` to finish.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from app import __version__
from app.api.codecs import v2
from app.api.deps import Services
from app.api.errors import GRPC_STATUS
from app.api.grpc import codec
from app.api.grpc import grpc_predict_v2_pb2 as pb2
from app.api.routes.v2 import model_metadata
from app.errors import ErrorReason, RequestError
from app.logs import MAX_REQUEST_ID_LENGTH, access_log, request_id_var
from app.metrics import GRPC_REQUEST_DURATION, GRPC_REQUESTS
from app.registry.store import RegistryError
from app.serving.routing import routing_key_var

SERVICE = "inference.GRPCInferenceService"
log = logging.getLogger(__name__)
Rpc = Callable[[Any, dict[str, Any]], Awaitable[Message]]


class InferenceService:
    """The six RPCs; each takes the request and the call's log state (model, instances)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def server_live(self, _: pb2.ServerLiveRequest, __: dict[str, Any]) -> Message:
        return pb2.ServerLiveResponse(live=True)

    async def server_ready(self, _: pb2.ServerReadyRequest, __: dict[str, Any]) -> Message:
        return pb2.ServerReadyResponse(ready=self.services.models.ready)

    async def server_metadata(self, _: pb2.ServerMetadataRequest, __: dict[str, Any]) -> Message:
        return pb2.ServerMetadataResponse(name="modelserve", version=__version__)

    async def model_ready(self, request: pb2.ModelReadyRequest, _: dict[str, Any]) -> Message:
        """A known model still loading is not ready (False); an unknown one is NOT_FOUND."""
        try:
            await self.services.inference.resolve(request.name, request.version or None)
        except RequestError as exc:
            if exc.reason is not ErrorReason.NOT_READY:
                raise
            return pb2.ModelReadyResponse(ready=False)
        return pb2.ModelReadyResponse(ready=True)

    async def model_metadata(self, request: pb2.ModelMetadataRequest, _: dict[str, Any]) -> Message:
        served = await self.services.inference.resolve(request.name, request.version or None)
        try:
            versions = self.services.registry.versions(request.name)
        except RegistryError:
            versions = [served.version]
        meta = model_metadata(served, versions)
        tensor = pb2.ModelMetadataResponse.TensorMetadata
        return pb2.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    async def model_infer(self, request: pb2.ModelInferRequest, trace: dict[str, Any]) -> Message:
        """route -> decoding -> predict, as ``app.api.routes.v2._infer`` does for REST."""
        settings, inference = self.services.settings, self.services.inference
        version = request.model_version or None
        route = await inference.route(request.model_name, version, trace)
        with inference.decoding(route):
            served = route.serves
            payload = codec.request_payload(request)
            parsed = v2.decode_infer_request(
                payload, served.contract, settings.max_batch, served.has_proba
            )
        result = await inference.predict(route, parsed.rows, trace)
        raw = bool(request.raw_input_contents)
        return codec.response(parsed, result, request.id, raw)

    def rpcs(self) -> dict[str, tuple[type[Message], Rpc]]:
        return {
            "ServerLive": (pb2.ServerLiveRequest, self.server_live),
            "ServerReady": (pb2.ServerReadyRequest, self.server_ready),
            "ModelReady": (pb2.ModelReadyRequest, self.model_ready),
            "ServerMetadata": (pb2.ServerMetadataRequest, self.server_metadata),
            "ModelMetadata": (pb2.ModelMetadataRequest, self.model_metadata),
            "ModelInfer": (pb2.ModelInferRequest, self.model_infer),
        }


def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    pairs = context.invocation_metadata() or ()
    return {str(k): v for k, v in pairs if isinstance(v, str)}


def _request_id(sent: str | None) -> str:
    if sent and sent.isprintable() and sent.strip():
        return sent[:MAX_REQUEST_ID_LENGTH]
    return os.urandom(16).hex()


def _observed(method: str, rpc: Rpc) -> Callable[..., Awaitable[Message]]:
    """The RPC with its errors as status codes, counted, timed and logged."""
    path = f"/{SERVICE}/{method}"

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
        start = time.perf_counter()
        headers = _metadata(context)
        request_id_var.set(_request_id(headers.get("x-request-id")))
        routing_key_var.set(headers.get("x-routing-key", "")[:256])
        trace: dict[str, Any] = {}
        code, details = grpc.StatusCode.OK, ""
        try:
            return await rpc(request, trace)
        except RequestError as exc:
            code, details = GRPC_STATUS[exc.reason], v2.error_message(exc)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code, details = grpc.StatusCode.INTERNAL, "internal error; see the server log"
            log.exception("gRPC %s failed", method)
        finally:
            elapsed = time.perf_counter() - start
            GRPC_REQUESTS.labels(method, code.name).inc()
            GRPC_REQUEST_DURATION.labels(method).observe(elapsed)
            access_log.info(
                "request",
                extra={
                    "method": "gRPC",
                    "path": path,
                    "status": code.name,
                    "latency_ms": round(elapsed * 1000, 3),
                    "model": trace.get("model"),
                    "version": trace.get("version"),
                    "instances": trace.get("instances"),
                },
            )
        # grpc keeps the AbortError that abort() raises in a reference cycle with the call's
        # state, so all its traceback holds waits for a full garbage collection, hundreds of
        # calls later: aborted outside the except block (the refusal and the frames that
        # decoded the request are not its context) and without the request, a refused call
        # leaves a few small objects, not its megabyte of tensors.
        del request
        await context.abort(code, details)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    return call


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def handler(services: Services) -> grpc.GenericRpcHandler:
    """The service's method handlers (no generated servicer base: these are typed)."""
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            _observed(method, rpc),
            request_deserializer=request_type.FromString,
            response_serializer=_serialize,
        )
        for method, (request_type, rpc) in InferenceService(services).rpcs().items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start(services: Services) -> grpc.aio.Server | None:
    """Serve gRPC on the settings' host and ``grpc_port`` (None when it is 0: off).

    A request message may be as large as an HTTP body (``max_body_bytes``); a port that cannot
    be bound fails start-up, as the HTTP port does.
    """
    settings = services.settings
    if not settings.grpc_port:
        return None
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            # Several workers each bind the port (the kernel spreads calls over them); one server
            # alone does not share it, so a second server on the same port fails to start
            # instead of silently taking half of the first one's calls.
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ]
    )
    server.add_generic_rpc_handlers((handler(services),))
    address = _address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(address)
    except RuntimeError as exc:
        raise RuntimeError(
            f"cannot serve gRPC on {address}: {exc}; choose another MODELSERVE_GRPC_PORT "
            "(0 turns gRPC off)"
        ) from exc
    await server.start()
    log.info("serving OIP v2 gRPC", extra={"address": address})
    return server


async def stop(server: grpc.aio.Server, grace_s: float) -> None:
    """Refuse new calls; let those in flight finish within ``grace_s``, then cancel them."""
    await server.stop(grace_s)
