"""A proxy in front of a server that changes one bit of one answer: can a suite say no?

``BitFlipProxy(http, grpc, flip_at=k)`` listens on its own loopback ports and forwards every
HTTP request (an ASGI app under uvicorn, forwarding with httpx) and every gRPC call (a generic
handler passing the bytes through) to the server. It numbers the inference answers it passes
(HTTP ``POST`` to ``/infer``, ``:predict``, ``/invocations``, ``/predict``; gRPC
``ModelInfer``) from 0, and in answer ``k`` flips the lowest bit of one byte of a value:

- a JSON body: the first letter or digit after the last ``"data"`` or ``"predictions"`` key
  (digits stay digits, letters stay letters: still JSON, a different number or label);
- a binary tensor body (``Inference-Header-Content-Length``) or gRPC raw output: the last byte;
- gRPC typed contents: the first value of the last output.

With ``flip_at=None`` it changes nothing, and only counts (``answers``).
"""

from __future__ import annotations

import re
import struct
import threading
import time
from concurrent import futures
from typing import Any

import grpc
import httpx
import uvicorn

from app.api.grpc import grpc_predict_v2_pb2 as pb2
from tests.helpers.support import free_port

_INFERENCE = re.compile(r"(/infer|:predict|/invocations|/predict)$")
_VALUES = re.compile(rb'"(data|predictions)"\s*:')
_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "host"}


def flip_json(body: bytes) -> bytes:
    keys = list(_VALUES.finditer(body))
    assert keys, f"no values to change in {body[:200]!r}"
    at = next(i for i in range(keys[-1].end(), len(body)) if chr(body[i]).isalnum())
    return body[:at] + bytes([body[at] ^ 1]) + body[at + 1 :]


def flip_last(body: bytes) -> bytes:
    return body[:-1] + bytes([body[-1] ^ 1])


def flip_grpc(message: bytes) -> bytes:
    response = pb2.ModelInferResponse.FromString(message)
    if response.raw_output_contents:
        last = response.raw_output_contents[-1]
        response.raw_output_contents[-1] = flip_last(last)
        return bytes(response.SerializeToString())
    contents = response.outputs[-1].contents
    for field, values in contents.ListFields():
        first = values[0]
        if isinstance(first, bytes):
            values[0] = flip_last(first)
        elif isinstance(first, float):
            fmt = "<f" if field.name == "fp32_contents" else "<d"
            values[0] = struct.unpack(fmt, flip_last(struct.pack(fmt, first)))[0]
        else:
            values[0] = first ^ 1
        return bytes(response.SerializeToString())
    raise AssertionError(f"no values to change in {response}")


class BitFlipProxy:
    """Forward to ``http`` and ``grpc`` (host:port); flip one bit of inference answer
    ``flip_at``. Use as a context manager; ``.http`` and ``.grpc`` are its own addresses."""

    def __init__(self, http: str, grpc_target: str, flip_at: int | None = None) -> None:
        self.target_http, self.target_grpc, self.flip_at = http, grpc_target, flip_at
        self.http = f"127.0.0.1:{free_port()}"
        self.grpc = f"127.0.0.1:{free_port()}"
        self.answers = 0
        self.flipped: str | None = None
        self._lock = threading.Lock()
        self._uvicorn = uvicorn.Server(
            uvicorn.Config(
                self._app, host="127.0.0.1", port=int(self.http.rsplit(":", 1)[1]),
                lifespan="off", log_level="warning", loop="asyncio", interface="asgi3",
            )
        )  # fmt: skip
        self._thread = threading.Thread(target=self._uvicorn.run, daemon=True)
        self._grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self._channel = grpc.insecure_channel(grpc_target)

    def _count(self, what: str) -> bool:
        """Number one more answer; True if it is the one to change."""
        with self._lock:
            index, self.answers = self.answers, self.answers + 1
            if index == self.flip_at:
                self.flipped = f"answer {index}: {what}"
                return True
            return False

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.decode().lower() not in _HOP]
        target = f"http://{self.target_http}{scope['raw_path'].decode()}"
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode()
        async with httpx.AsyncClient(timeout=120) as client:
            answer = await client.request(scope["method"], target, headers=headers, content=body)
        content = answer.content
        path = scope["path"]
        inference = scope["method"] == "POST" and _INFERENCE.search(path) is not None
        if inference and answer.status_code == 200 and self._count(f"POST {path}"):
            binary = "inference-header-content-length" in answer.headers
            content = flip_last(content) if binary else flip_json(content)
        out = [(k.encode(), v.encode()) for k, v in answer.headers.items() if k not in _HOP]
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
        await send({"type": "http.response.body", "body": content})

    def _forward(self, method: str) -> Any:
        call: Any = self._channel.unary_unary(method)

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                answer: bytes = call(request, timeout=120)
            except grpc.RpcError as exc:
                context.abort(exc.code(), exc.details() or "")
            if method.endswith("/ModelInfer") and self._count(f"gRPC {method}"):
                return flip_grpc(answer)
            return answer

        return grpc.unary_unary_rpc_method_handler(handle)

    def __enter__(self) -> BitFlipProxy:
        proxy = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> Any:
                return proxy._forward(details.method)

        self._grpc_server.add_generic_rpc_handlers((Handler(),))
        self._grpc_server.add_insecure_port(self.grpc)
        self._grpc_server.start()
        self._thread.start()
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                raise RuntimeError("the proxy's HTTP server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(10)
        self._grpc_server.stop(grace=None)
        self._channel.close()
