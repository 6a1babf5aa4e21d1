"""In-process apps for tests: many per process, which production never builds."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.config import Settings
from app.main import create_app

# Everything the instrumentator registers in the global registry when an app's middleware is built.
HTTP_METRICS = (
    "http_requests_total",
    "http_request_size_bytes",
    "http_response_size_bytes",
    "http_request_duration_highr_seconds",
    "http_request_duration_seconds",
    "http_requests_inprogress",
)


def forget_http_metrics() -> None:
    """Let a second app in one process count its HTTP requests.

    The instrumentator registers its metrics in the global registry when an app's middleware
    is built. Finding an earlier app's metrics there, it fails on the in-progress gauge
    (DuplicateTimeseries) and silently skips http_requests_total and the latency histograms.
    """
    for name in HTTP_METRICS:
        stale = REGISTRY._names_to_collectors.get(name)
        if stale is not None:
            REGISTRY.unregister(stale)


def build_app(settings: Settings) -> FastAPI:
    forget_http_metrics()
    return create_app(settings)


@contextlib.contextmanager
def ready_client(settings: Settings, timeout_s: float = 60.0) -> Iterator[TestClient]:
    """An in-process app, entered, once it answers ready: production and its canary and shadow
    loaded (a request sent earlier is answered as soon as production is, before them)."""
    with TestClient(build_app(settings)) as client:
        deadline = time.monotonic() + timeout_s
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline, f"not ready after {timeout_s} s"
            time.sleep(0.02)
        yield client
