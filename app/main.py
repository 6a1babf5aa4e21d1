"""Builds the FastAPI application: settings, model manager, routes, metrics, logging."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_fastapi_instrumentator import Instrumentator

from app import __version__
from app.api import access, health, models, v2
from app.api import feedback as feedback_api
from app.api.admin import build_router as build_admin_router
from app.api.errors import install_error_handlers
from app.api.fastpath import PredictFastPath
from app.api.openapi_errors import document_not_found
from app.api.predict import build_router, request_body_doc
from app.config import Settings
from app.logs import RequestContextMiddleware, configure_logging
from app.monitoring import predlog
from app.registry.store import Registry, RegistryError
from app.serving.manager import ModelManager

log = logging.getLogger(__name__)

# Per-route HTTP latency buckets (the instrumentator's default is only 0.1/0.5/1 s, too coarse
# for the p95 alert and per-route panels of a service answering in about a millisecond).
HTTP_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Everything the instrumentator registers in the global registry when an app's middleware is built.
HTTP_METRICS = (
    "http_requests_total",
    "http_request_size_bytes",
    "http_response_size_bytes",
    "http_request_duration_highr_seconds",
    "http_request_duration_seconds",
    "http_requests_inprogress",
)


def _predict_doc(registry: Registry, settings: Settings) -> dict[str, Any]:
    """The request example for /docs, read from metadata (no artifact is loaded here)."""
    try:
        version = registry.resolve(settings.model, settings.alias)
        meta = registry.metadata(settings.model, version)
        return request_body_doc(meta.feature_names, meta.example)
    except (RegistryError, ValueError, OSError):
        return request_body_doc([], [])


def _forget_http_metrics() -> None:
    """Let a second app in one process (tests build many) count its HTTP requests.

    The instrumentator registers its metrics in the global registry when an app's middleware
    is built. Finding an earlier app's metrics there, it fails on the in-progress gauge
    (DuplicateTimeseries) and silently skips http_requests_total and the latency histograms.
    """
    for name in HTTP_METRICS:
        stale = REGISTRY._names_to_collectors.get(name)
        if stale is not None:
            REGISTRY.unregister(stale)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_format, settings.log_level)
    registry = Registry(settings.registry)
    manager = ModelManager(registry, settings)
    prediction_log = predlog.from_settings(settings)

    async def load_models() -> None:
        await manager.start()
        # Start-up objects never die: keep them out of every later GC pass (p99 tail).
        gc.collect()
        gc.freeze()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background: /health/live answers at once, /health/ready says 503 until
        # every model is verified, loaded and warmed.
        if prediction_log is not None:
            prediction_log.start()
            predlog.activate(prediction_log)
        stop_metrics = access.start_metrics_server(settings)
        loading = asyncio.get_running_loop().create_task(load_models())
        yield
        if stop_metrics is not None:
            stop_metrics()
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loading
        await manager.stop()
        if prediction_log is not None:  # after the models: their last rows get written too
            predlog.deactivate(prediction_log)
            await asyncio.to_thread(prediction_log.stop)

    app = FastAPI(
        title="modelserve",
        version=__version__,
        description="Versioned scikit-learn models over HTTP, instrumented for Prometheus.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.manager = manager
    app.state.prediction_log = prediction_log
    install_error_handlers(app)
    app.include_router(build_router(_predict_doc(registry, settings)))
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(feedback_api.router)
    if settings.admin_token is not None and settings.admin_token.get_secret_value():
        app.include_router(build_admin_router(settings.admin_token))
    app.include_router(v2.router)
    # Inside the Prometheus and request-log middlewares (added after it), outside the router.
    app.add_middleware(PredictFastPath, settings=settings)
    _forget_http_metrics()
    instrumentator = Instrumentator(
        should_group_status_codes=False,
        should_instrument_requests_inprogress=True,
        inprogress_labels=True,
        excluded_handlers=["/metrics"],
    ).instrument(app, latency_lowr_buckets=HTTP_LATENCY_BUCKETS)
    if access.metrics_on_main_port(settings):
        instrumentator.expose(app, include_in_schema=False)
    app.add_middleware(RequestContextMiddleware)
    access.install_cors(app, settings)
    document_not_found(app)
    return app
