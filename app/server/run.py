"""Start uvicorn for ``app.main:create_app`` with the project's protocol and shutdown rules
(the drain on SIGTERM: ``app/server/drain.py``; several workers: ``app/server/supervisor.py``)."""

from __future__ import annotations

import math
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import uvicorn

from app.config import Settings
from app.server.supervisor import serve

APP = "app.main:create_app"


def prepare_multiprocess_dir(workers: int) -> None:
    """Point prometheus_client at an empty per-run directory when several workers share it."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    elif workers > 1:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="modelserve-metrics-")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run keyword arguments for these settings (also used to serve an app in-process)."""
    return {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "loop": "uvloop",  # explicit: "auto" silently falls back to asyncio and h11 if absent
        "http": "app.server.protocol:HeaderDeadlineProtocol",  # httptools + header deadline
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": math.ceil(settings.request_timeout_s),
        # uvicorn kills a worker that does not answer its supervisor's ping in time; with the
        # default 5 s, three replicas starting together on a loaded 2-core host (make
        # stack-test) had every worker killed during its imports and respawned forever.
        "timeout_worker_healthcheck": 30,
    }


def _stopped_by_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run_server(settings: Settings) -> None:
    """Serve until stopped. SIGTERM: ``/health/ready`` answers 503 while every request is still
    answered for ``MODELSERVE_SHUTDOWN_DRAIN_S``, then the listener closes, the requests in
    flight finish and it ends with ``SystemExit(0)``; SIGINT or a second SIGTERM skip the drain.

    Workers build their own application from the ``MODELSERVE_*`` environment, so whatever
    must reach them (CLI flags included) has to be in the environment before this is called.
    A per-run metrics directory (``$TMPDIR/modelserve-*``) is removed afterwards; any other
    is only emptied at start, since Prometheus would otherwise add up a previous run's files.
    """
    prepare_multiprocess_dir(settings.workers)
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    # uvicorn finishes in-flight requests on SIGTERM, then re-raises the signal; a stop asked
    # for by the orchestrator is a clean exit (0), not death by signal (-15).
    signal.signal(signal.SIGTERM, _stopped_by_sigterm)
    try:
        serve(uvicorn.Config(APP, **uvicorn_options(settings)), settings.shutdown_drain_s)
    finally:
        if multiproc_dir and multiproc_dir.startswith(tempfile.gettempdir() + "/modelserve-"):
            shutil.rmtree(multiproc_dir, ignore_errors=True)
