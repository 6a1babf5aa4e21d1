"""The HTTP metrics of prometheus-fastapi-instrumentator, with each path's route found once.

The instrumentator names a request's handler by matching its path against every route of the
app, in order, on every request: 12-17 µs of a /predict request's ~250 µs, the most costly
part of its middleware. The routes do not change once the app is built, so the answer for a
(method, path) is the same every time: kept in a bounded LRU cache (paths come from clients,
so it must not grow without bound). Metrics, labels and buckets are the library's own.
"""

from __future__ import annotations

from functools import lru_cache

from fastapi import FastAPI
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from starlette.middleware import Middleware
from starlette.requests import Request

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
