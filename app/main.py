"""Builds the application: every service made once from the settings, then routes and middleware."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator

from app import __version__
from app.api.cors import install_cors
from app.api.deps import Services
from app.api.errors import install_error_handlers
from app.api.fastpath import PredictFastPath
from app.api.grpc import service as grpc_service
from app.api.instrumentation import cache_route_names
from app.api.lane import PredictLane
from app.api.openapi_errors import document_not_found
from app.api.routes import explain, feedback, health, invocations, models, v1, v2
from app.api.routes.admin import build_router as build_admin_router
from app.api.routes.predict import build_router, request_body_doc
from app.config import Settings
from app.logs import RequestContextMiddleware, configure_logging
from app.monitoring import predlog, shadowlog
from app.registry.store import Registry, RegistryError
from app.server.memory import tune_malloc
from app.server.metrics_port import start_metrics_server
from app.server.process_metrics import start_sampling
from app.server.protocol import PREDICT_LANE
from app.server.workers import start_sweeping
from app.serving.attribution import Attribution
from app.serving.default_model import choose_default_model
from app.serving.explain.service import Explainers
from app.serving.manager import ModelManager
from app.serving.scoring import Inference

# Per-route HTTP latency buckets (the instrumentator's default is only 0.1/0.5/1 s, too coarse
# for the p95 alert and per-route panels of a service answering in about a millisecond).
HTTP_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def build_services(settings: Settings) -> Services:
    registry = Registry(settings.registry)
    settings = settings.model_copy(
        update={"default_model": choose_default_model(settings, registry)}
    )
    models = ModelManager(registry, settings)
    prediction_log = predlog.from_settings(settings)
    sink = prediction_log.submit if prediction_log is not None else None
    shadow_log = shadowlog.ShadowWriter if prediction_log is not None else None
    explainers = Explainers(settings)
    attribution = Attribution.from_settings(settings, explainers)
    inference = Inference(
        models, sink, settings.request_timeout_s, shadow_log, settings.shadow_queue_size,
        attribution,
    )  # fmt: skip
    return Services(settings, registry, models, inference, prediction_log, explainers)


def _predict_doc(services: Services) -> dict[str, Any]:
    """The request example for /docs, read from metadata (no artifact is loaded here)."""
    settings, registry = services.settings, services.registry
    try:
        version = registry.resolve(settings.default_model, settings.alias)
        meta = registry.metadata(settings.default_model, version)
        return request_body_doc(meta.feature_names, meta.example)
    except (RegistryError, ValueError, OSError):
        return request_body_doc([], [])


def _lifespan(services: Services) -> Any:
    settings, plog = services.settings, services.prediction_log

    async def load_models() -> None:
        await services.models.start()
        # Start-up objects never die: keep them out of every later GC pass (p99 tail).
        gc.collect()
        gc.freeze()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Load in the background: /health/live answers at once, /health/ready says 503 until
        # every model is verified, loaded and warmed.
        stop_sweeping = start_sweeping()  # the live gauges of workers that were killed
        start_sampling()  # this worker's memory, CPU and open files, as long as it lives
        if plog is not None:
            plog.start()
        stop_metrics = start_metrics_server(settings)
        loading = asyncio.get_running_loop().create_task(load_models())
        grpc_server = await grpc_service.start(services)  # in this loop, in every worker
        # The server's HTTP protocol (app.server.protocol) reads its deadline from this state;
        # app.server.drain sets `draining` on SIGTERM (/health/ready answers 503 from then on).
        # The predict routes go to the lane (app.api.lane), beside the middleware stack.
        yield {
            "header_timeout_s": settings.header_timeout_s,
            "draining": services.models.draining,
            PREDICT_LANE: PredictLane(app, services),
        }
        if grpc_server is not None:  # first: its calls in flight still need the models
            await grpc_service.stop(grpc_server, settings.request_timeout_s)
        if stop_metrics is not None:
            stop_metrics()
        if stop_sweeping is not None:
            stop_sweeping()
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loading
        await services.inference.close()  # queued shadow scoring, while the models are up
        services.explainers.close()
        await services.models.stop()
        if plog is not None:  # after the models: their last rows get written too
            await asyncio.to_thread(plog.stop)

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_format, settings.log_level)
    tune_malloc()  # once per worker process: freed request memory stays shared
    services = build_services(settings)
    settings = services.settings  # with the default model chosen
    app = FastAPI(
        title="modelserve",
        version=__version__,
        description="Versioned scikit-learn models over HTTP, instrumented for Prometheus.",
        lifespan=_lifespan(services),
        # A slash redirect (307 to the path without its trailing slash) is labelled by the
        # instrumentator with the raw path: any client text would become a metric label value.
        redirect_slashes=False,
        # FastAPI's OpenTelemetry bridge asks the global tracer, meter and logger providers on
        # every request whether one is configured (each an environment lookup); modelserve
        # configures none (its metrics are Prometheus's), so the answer is always no.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(build_router(_predict_doc(services)))
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(feedback.router)
    if settings.admin_token is not None and settings.admin_token.get_secret_value():
        app.include_router(build_admin_router(settings.admin_token))
    app.include_router(explain.router)  # before v2's catch-all
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.include_router(invocations.router)
    # Inside the Prometheus and request-log middlewares (added after it), outside the router.
    app.add_middleware(PredictFastPath, services=services)
    instrumentator = Instrumentator(
        should_group_status_codes=False,
        should_instrument_requests_inprogress=True,
        inprogress_labels=True,
        excluded_handlers=["/metrics"],
    ).instrument(app, latency_lowr_buckets=HTTP_LATENCY_BUCKETS)
    cache_route_names(app)
    if settings.metrics_port is None:
        instrumentator.expose(app, include_in_schema=False)
    app.add_middleware(RequestContextMiddleware)
    install_cors(app, settings.cors_origins)
    document_not_found(app)
    return app
