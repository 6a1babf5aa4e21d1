"""Structured logging: one line per request, plain text or JSON, carrying the request id."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID_LENGTH = 128
_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}

access_log = logging.getLogger("modelserve.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return self.line(
            record.created, record.levelname, record.name, record.getMessage(), extra, exc
        )

    def line(
        self,
        created: float,
        levelname: str,
        name: str,
        message: str,
        extra: dict[str, Any],
        exc: str | None = None,
    ) -> str:
        payload: dict[str, Any] = {
            "ts": round(created, 6),
            "level": levelname.lower(),
            "logger": name,
            "message": message,
            "request_id": request_id_var.get(),
        }
        payload.update(extra)
        if exc is not None:
            payload["exc_info"] = exc
        return orjson.dumps(payload, default=str).decode()


# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators, written as
# Python escapes: a client's CR/LF, NUL or ESC can neither forge a line nor reach a terminal.
_ESCAPES = {c: repr(chr(c))[1:-1] for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}


def one_line(text: str) -> str:
    """``text`` with every control character escaped (unchanged, and fast, when it has none)."""
    return text if text.isprintable() else text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    """``asctime level logger message request_id=... key=value...``, always exactly one line.

    The message, every extra value and a traceback (its newlines included) are escaped, since
    any of them may carry client-supplied text: a request path, a model name, an exception's
    message. The JSON format needs none of this (its strings are quoted).
    """

    _second: tuple[int, str] = (-1, "")  # one tuple: threads read a matching pair

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        if record.exc_info or record.exc_text or record.stack_info:
            return self._join(super().format(record), extra)
        return self.line(record.created, record.levelname, record.name, record.getMessage(), extra)

    def line(
        self, created: float, levelname: str, name: str, message: str, extra: dict[str, Any]
    ) -> str:
        """The line of a record without a traceback, as ``logging.Formatter`` writes its head
        (``asctime`` is ``formatTime``'s, the seconds' text made once per second)."""
        second, text = self._second
        if second != int(created):
            second = int(created)
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        msecs = int((created - second) * 1000)
        return self._join(f"{text},{msecs:03d} {levelname} {name} {message}", extra)

    @staticmethod
    def _join(head: str, extra: dict[str, Any]) -> str:
        pairs = " ".join(f"{k}={v}" for k, v in extra.items())
        return one_line(f"{head} request_id={request_id_var.get()} {pairs}".rstrip())


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, one line per record, the event loop's lines written once per loop iteration.

    A line logged on a thread running an event loop (every request's access line) waits in a
    buffer for the end of the loop's current iteration, where all that came meanwhile leave in
    one write: one system call for the many requests a busy loop answers in an iteration
    instead of one each. A line from any other thread (or loop) writes the buffer first, then
    itself, so lines keep their order; ``flush`` (and so ``logging.shutdown`` at exit) writes
    the buffer.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self._pending: list[str] = []
        self._scheduled: asyncio.AbstractEventLoop | None = None  # the loop that will write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record))
        except Exception:
            self.handleError(record)

    def write_line(self, line: str) -> None:
        loop = asyncio._get_running_loop()
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(line)
            if loop is not None and loop is self._scheduled:
                return
            if loop is None or self._scheduled is not None:
                # Another thread, or a loop that may never run its callback (one that ended).
                self._write()
            if loop is None:
                return
            self._scheduled = loop
        loop.call_soon(self._end_of_iteration, loop)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def _end_of_iteration(self, loop: asyncio.AbstractEventLoop) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._scheduled is loop:
                self._scheduled = None
            try:
                self._write()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": "(buffered log lines)"}))

    def _write(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()


def configure_logging(log_format: str = "text", level: str = "info") -> None:
    handler = LineHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    # No formatter here prints caller, thread or process: skip collecting them on every record
    # (the stack walk for the caller alone is a visible share of a request's cost).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def _direct_handler() -> LineHandler | None:
    """The handler an access line can be written to without a log record: the one
    ``configure_logging`` installed, alone, with nothing between it and the access logger
    (no other handler, no filter, level enabled) and formatting with one of ours; else None
    (the ``logging`` path)."""
    if not access_log.isEnabledFor(logging.INFO) or access_log.filters or access_log.handlers:
        return None
    logger = access_log.parent
    while logger is not None and logger.parent is not None:  # up to the root
        if logger.handlers or logger.filters or not logger.propagate:
            return None
        logger = logger.parent
    if logger is None or logger.filters or len(logger.handlers) != 1:
        return None
    handler = logger.handlers[0]
    if type(handler) is not LineHandler or handler.filters or handler.level > logging.INFO:
        return None
    if not isinstance(handler.formatter, TextFormatter | JsonFormatter):
        return None
    return handler


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` if it is usable, else a new one."""
    raw = next((v for k, v in headers if k == REQUEST_ID_HEADER), None)
    if raw:
        text = raw.decode("latin-1")[:MAX_REQUEST_ID_LENGTH]
        if text.isprintable() and text.strip():
            return text
    return os.urandom(16).hex()  # 32 hex digits, like uuid4().hex at a quarter of the cost


def log_access(scope: Scope, status: int, start: float) -> None:
    """The request's access-log line; the route may have put ``model``, ``version`` and
    ``instances`` into the scope's state.

    Written straight by ``configure_logging``'s handler when nothing else listens (the same
    line, without building a log record: a quarter of the cost), else through ``logging``."""
    state = scope.get("state") or {}
    extra = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "latency_ms": round((time.perf_counter() - start) * 1000, 3),
        "model": state.get("model"),
        "version": state.get("version"),
        "instances": state.get("instances"),
    }
    handler = _direct_handler()
    if handler is None:
        access_log.info("request", extra=extra)
        return
    formatter: TextFormatter | JsonFormatter = handler.formatter  # type: ignore[assignment]
    try:
        line = formatter.line(time.time(), "INFO", access_log.name, "request", extra)
        handler.write_line(line)
    except Exception:
        handler.handleError(logging.makeLogRecord({"msg": "request", **extra}))


class RequestContextMiddleware:
    """Accepts or generates ``X-Request-ID``, echoes it, and logs one line per request.

    The route may put ``model``, ``version`` and ``instances`` into ``request.state``; they
    are added to the line. Pure ASGI, to keep the per-request cost small.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope["headers"])
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log_access(scope, status, start)
            request_id_var.reset(token)
