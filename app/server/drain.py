"""SIGTERM in two steps: drain (readiness 503, still serving), then uvicorn's graceful stop.

A balancer that health-checks its servers (HAProxy, nginx, a cloud load balancer) sends a
replica new connections until its checks fail. uvicorn alone closes its listener at SIGTERM,
so the checks and the requests sent meanwhile meet refused connections. Here the first SIGTERM
only marks the worker draining: ``/health/ready`` answers 503 (``{"status": "draining"}``) and
every response says ``connection: close`` (``app/server/protocol.py``), so keep-alive clients
come back on a new connection, which the balancer gives another replica; meanwhile the worker
accepts and answers everything for ``MODELSERVE_SHUTDOWN_DRAIN_S``. Then uvicorn's own
shutdown runs: the listener closes, the requests in flight finish (``timeout_graceful_shutdown``)
and the lifespan stops the gRPC service (which answered throughout) and flushes the prediction
log. SIGINT (Ctrl-C), a second SIGTERM, a drain of 0, or a SIGTERM before the worker listens
stop at once, as uvicorn does.

The flag is the model manager's ``draining`` event, which the application's lifespan publishes
as ``draining`` in its state (``app/main.py``): uvicorn hands that dict to the lifespan and to
every connection, and every readiness answer reads the manager's ``ready`` (false once set).

With several workers, ``app/server/supervisor.py`` runs a ``DrainingServer`` in each worker and
passes the stop signals on.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import uvicorn

DRAINING = "draining"
"""The lifespan-state key of the ``threading.Event`` set when the drain starts."""

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn's server: on a first SIGTERM, ``drain_s`` seconds of serving before it stops."""

    def __init__(self, config: uvicorn.Config, drain_s: float) -> None:
        super().__init__(config)
        self.drain_s = drain_s
        self.drain_until: float | None = None
        self._drain_announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Runs between two bytecodes of the main thread: sets flags and nothing else."""
        if (
            sig == signal.SIGTERM
            and self.drain_s > 0
            and self.started
            and not self.should_exit
            and self.drain_until is None
        ):
            self._captured_signals.append(sig)  # re-raised at the end, as uvicorn does
            self.drain_until = time.monotonic() + self.drain_s
            flag = self.draining_flag()
            if flag is not None:
                flag.set()  # the only setter; readers only ask is_set()
            return
        super().handle_exit(sig, frame)  # SIGINT, a second signal, no drain: stop now

    def draining_flag(self) -> threading.Event | None:
        lifespan = getattr(self, "lifespan", None)
        flag = getattr(lifespan, "state", {}).get(DRAINING)
        return flag if isinstance(flag, threading.Event) else None

    async def on_tick(self, counter: int) -> bool:
        if self.drain_until is not None and not self.should_exit:
            if not self._drain_announced:
                self._drain_announced = True
                log.info(
                    "SIGTERM: draining for %g s (/health/ready answers 503, requests are "
                    "still served), then closing the listener",
                    self.drain_s,
                )
            if time.monotonic() >= self.drain_until:
                log.info("drain over: closing the listener, finishing the requests in flight")
                self.should_exit = True
        return await super().on_tick(counter)
