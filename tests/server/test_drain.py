"""The draining server's signal rules, without a process: the first SIGTERM of a listening
server starts the drain (the lifespan's ``draining`` event set, no exit yet), which ends after
``drain_s``; SIGINT, a second signal, a drain of 0 or a server not yet listening stop at once.
(The real thing, with one worker and two: tests/e2e/robustness/test_drain.py.)"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from types import SimpleNamespace

import pytest
import uvicorn

from app.server.drain import DRAINING, DrainingServer


def _server(drain_s: float, started: bool = True) -> tuple[DrainingServer, threading.Event]:
    server = DrainingServer(uvicorn.Config(app=lambda *a: None), drain_s)
    flag = threading.Event()
    server.lifespan = SimpleNamespace(state={DRAINING: flag})
    server.started = started
    return server, flag


def test_a_first_sigterm_drains_and_the_drain_ends_after_drain_s() -> None:
    server, flag = _server(0.3)
    server.handle_exit(signal.SIGTERM, None)
    assert flag.is_set() and not server.should_exit
    assert not asyncio.run(server.on_tick(1))  # still serving
    time.sleep(0.35)
    assert asyncio.run(server.on_tick(2)) and server.should_exit
    assert not server.force_exit


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (signal.SIGTERM, signal.SIGTERM),  # a second SIGTERM ends the drain
        (signal.SIGTERM, signal.SIGINT),  # so does Ctrl-C
    ],
)
def test_a_second_signal_ends_the_drain(first: int, then: int) -> None:
    server, flag = _server(60)
    server.handle_exit(first, None)
    assert flag.is_set() and not server.should_exit
    server.handle_exit(then, None)
    assert server.should_exit and not server.force_exit


@pytest.mark.parametrize(
    ("sig", "drain_s", "started"),
    [
        (signal.SIGINT, 60, True),  # Ctrl-C: no drain
        (signal.SIGTERM, 0, True),  # MODELSERVE_SHUTDOWN_DRAIN_S=0
        (signal.SIGTERM, 60, False),  # not listening yet: nothing to drain
    ],
)
def test_no_drain(sig: int, drain_s: float, started: bool) -> None:
    server, flag = _server(drain_s, started)
    server.handle_exit(sig, None)
    assert server.should_exit and not flag.is_set()


def test_a_second_sigint_while_stopping_forces_the_exit_as_in_uvicorn() -> None:
    server, _ = _server(60)
    server.handle_exit(signal.SIGINT, None)
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit


def test_an_app_without_the_event_still_drains() -> None:
    server = DrainingServer(uvicorn.Config(app=lambda *a: None), 60)
    server.started = True
    server.handle_exit(signal.SIGTERM, None)
    assert server.drain_until is not None and not server.should_exit
