"""In-process apps for tests: many per process, which production never builds."""

from __future__ import annotations

from fastapi import FastAPI
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
