"""/metrics on its own port (``MODELSERVE_METRICS_PORT``), apart from the public one.

A prometheus_client HTTP server serves it, with the multiprocess collector when
``PROMETHEUS_MULTIPROC_DIR`` is set, so any one worker answers for all of them.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from app.config import Settings

# Named after the module this code came from: operators filter logs by that name.
log = logging.getLogger(__name__)


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def start_metrics_server(settings: Settings) -> Callable[[], None] | None:
    """Serve /metrics on ``settings.metrics_port``; returns how to stop it (None: not started).

    With several workers the first one to bind serves everyone; the others find the port taken,
    which is expected and not an error.
    """
    if settings.metrics_port is None:
        return None
    try:
        server, thread = start_http_server(
            settings.metrics_port, addr=settings.host, registry=_registry()
        )
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            raise
        log.info("metrics port %s served by another worker", settings.metrics_port)
        return None
    log.info("serving /metrics on %s:%s", settings.host, settings.metrics_port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
