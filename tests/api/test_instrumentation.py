"""The HTTP metrics name a request's route as the instrumentator does, from a bounded cache."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_fastapi_instrumentator import routing
from starlette.requests import Request

from app.api.instrumentation import (
    HTTP_METRICS,
    LABELS_CACHE_SIZE,
    ROUTE_CACHE_SIZE,
    CachedRouteInstrumentator,
)


def _instrumentator(client: TestClient) -> CachedRouteInstrumentator:
    app = client.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(app, CachedRouteInstrumentator):
        app = app.app
    return app


def test_route_names_are_the_libraries_and_the_cache_is_bounded(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()
    client.get("/health/live")  # builds the middleware stack
    middleware = _instrumentator(client)
    paths = [
        ("POST", "/predict"),
        ("POST", "/v1/models/breast-cancer:predict"),
        ("POST", "/v1/models/other:predict"),
        ("GET", "/models/breast-cancer"),
        ("POST", "/v2/models/breast-cancer/versions/1/infer"),
        ("GET", "/no/such/route"),
    ]
    for method, path in paths:
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        request = Request({**scope, "app": client.app, "headers": [], "query_string": b""})
        own = routing.get_route_name(request, False)
        expected = (own, True) if own else (path, False)
        assert middleware._get_handler(request) == expected
        assert middleware._get_handler(request) == expected  # from the cache
    for i in range(ROUTE_CACHE_SIZE + 100):
        request = Request({"type": "http", "method": "GET", "path": f"/x{i}", "app": client.app})
        middleware._get_handler(request)
    assert middleware._handler_of.cache_info().currsize == ROUTE_CACHE_SIZE


def test_requests_are_counted_under_their_template(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    client.get("/health/live")
    collectors = {n: c for c, names in REGISTRY._collector_to_names.items() for n in names}
    for name in HTTP_METRICS:  # each labelled HTTP metric finds its children in a bounded cache
        assert collectors[name].labels.cache_info().maxsize == LABELS_CACHE_SIZE  # type: ignore[attr-defined]
    for _ in range(2):
        client.post("/v1/models/breast-cancer:predict", json={"instances": "no"})
    text = client.get("/metrics").text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("http_requests_total{")
        and 'handler="/v1/models/{name}:predict"' in line
        and 'status="422"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 2
