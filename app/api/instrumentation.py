"""The HTTP metrics of prometheus-fastapi-instrumentator, with each path's route found once.

The instrumentator names a request's handler by matching its path against every route of the
app, in order, on every request: 12-17 µs of a /predict request's ~250 µs, the most costly
part of its middleware. The routes do not change once the app is built, so the answer for a
(method, path) is the same every time: kept in a bounded LRU cache (paths come from clients,
so it must not grow without bound). Then each of its metrics looks up its labelled child on
every request (``labels()``: every value checked and turned into a string, under a lock), five
times a request: the same children, also kept in a bounded cache. Metrics, labels and buckets
are the library's own.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.types import Scope

# Its labelled metrics (those with a "handler" label; the in-progress gauge is the middleware's).
HTTP_METRICS = (
    "http_requests_total",
    "http_request_size_bytes",
    "http_response_size_bytes",
    "http_request_duration_seconds",
)
# Label sets remembered per metric: routes x methods x statuses in use, many times over.
LABELS_CACHE_SIZE = 4096
# Distinct paths remembered: every route template many times over, and a bound on what a
# client sending random paths can make the cache hold.
ROUTE_CACHE_SIZE = 4096


class CachedRouteInstrumentator(PrometheusInstrumentatorMiddleware):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        parent = super()._get_handler

        @lru_cache(maxsize=ROUTE_CACHE_SIZE)
        def handler_of(method: str, path: str, root_path: str, app: object) -> tuple[str, bool]:
            scope = {"type": "http", "method": method, "path": path, "root_path": root_path}
            return parent(Request({**scope, "app": app, "headers": [], "query_string": b""}))

        self._handler_of = handler_of
        if self.inprogress is not None:
            _cache_children(self.inprogress)
        cache_label_children(self.registry)

        self.series = DefaultSeries(self.registry) if self._default_only() else None

    def _default_only(self) -> bool:
        """Whether its one instrumentation is the library's default, as ``app.main`` sets it."""
        (only,) = self.instrumentations or (None,)
        return getattr(only, "__qualname__", "") == "default.<locals>.instrumentation" and not (
            self.async_instrumentations
        )

    def handler_name(self, scope: Scope, app: object) -> str:
        """The route template a request is counted under (``app``: the FastAPI app, which
        Starlette puts in the scope before this middleware runs)."""
        name, _ = self._handler_of(scope["method"], scope["path"], scope.get("root_path", ""), app)
        return name

    def inprogress_child(self, method: str, handler: str) -> Any:
        """The in-progress gauge's child for a request, incremented (None if it is off)."""
        if self.inprogress is None:
            return None
        child = self.inprogress
        if self.inprogress_labels:
            child = child.labels(method, handler)
        child.inc()
        return child

    def _get_handler(self, request: Request) -> tuple[str, bool]:
        scope = request.scope
        return self._handler_of(
            scope["method"], scope["path"], scope.get("root_path", ""), scope.get("app")
        )


def cache_route_names(app: FastAPI) -> None:
    """Swap the instrumentator's middleware (added by ``Instrumentator.instrument``) for the
    cached one, with the same arguments."""
    for i, middleware in enumerate(app.user_middleware):
        cls: object = middleware.cls
        if cls is PrometheusInstrumentatorMiddleware:
            app.user_middleware[i] = Middleware(
                CachedRouteInstrumentator, *middleware.args, **middleware.kwargs
            )
            return
    raise RuntimeError("the instrumentator's middleware is not installed")


def cache_label_children(registry: CollectorRegistry = REGISTRY) -> None:
    """Each of the instrumentator's labelled metrics looks its children up through a bounded
    cache. Nothing removes their children, so a cached child is always the metric's own."""
    collectors = {name: c for c, names in registry._collector_to_names.items() for name in names}
    for name in HTTP_METRICS:
        metric = collectors.get(name)
        if metric is None:
            raise RuntimeError(f"the instrumentator's metric {name} is not registered")
        _cache_children(metric)


def _cache_children(metric: object) -> None:
    labels = metric.labels  # type: ignore[attr-defined]
    if hasattr(labels, "cache_info"):  # an app built again in this process: done already
        return
    metric.labels = lru_cache(maxsize=LABELS_CACHE_SIZE)(labels)  # type: ignore[attr-defined]


class DefaultSeries:
    """What the instrumentator's default instrumentation writes for one request, written
    straight to its metrics: the same five observations (``metrics.default``: requests by
    method, status and handler; request and response sizes from their ``Content-Length``; the
    latency without labels and by method and handler) without building its ``Info``, a
    request's headers and a response object for each request: a third of its cost. Only for
    the library's default, which the lane's test holds to the middleware's series."""

    def __init__(self, registry: CollectorRegistry) -> None:
        found: dict[str, Any] = registry._names_to_collectors
        self._total = found["http_requests_total"]
        self._in_size = found["http_request_size_bytes"]
        self._out_size = found["http_response_size_bytes"]
        self._highr = found["http_request_duration_highr_seconds"]
        self._lowr = found["http_request_duration_seconds"]
        self._children = lru_cache(maxsize=LABELS_CACHE_SIZE)(self._children_of)

    def _children_of(self, method: str, handler: str, status: str) -> tuple[Any, Any, Any, Any]:
        return (
            self._total.labels(method, status, handler),
            self._in_size.labels(handler),
            self._out_size.labels(handler),
            self._lowr.labels(method, handler),
        )

    def observe(
        self,
        method: str,
        handler: str,
        status: int,
        request_bytes: int,
        response_bytes: int,
        seconds: float,
    ) -> None:
        total, in_size, out_size, lowr = self._children(method, handler, str(status))
        total.inc()
        in_size.observe(request_bytes)
        out_size.observe(response_bytes)
        self._highr.observe(seconds)
        lowr.observe(seconds)
