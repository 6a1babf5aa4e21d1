"""Shared fixtures: a private registry copy, an in-process client, real server processes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest.nodeid import NodeId
from fastapi.testclient import TestClient

from app.config import Settings
from app.registry.store import Registry
from tests.helpers.app_factory import build_app
from tests.helpers.support import Server, copy_registry

SHARED_SCOPES = ("module", "class")


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


def _shares_a_fixture(item: pytest.Item) -> bool:
    """The test uses a module- or class-scoped fixture of the suite (a server, a fitted world)."""
    if not isinstance(item, pytest.Function):
        return False
    return any(
        defs[-1].scope in SHARED_SCOPES and defs[-1].baseid  # baseid "": a plugin's fixture
        for defs in item._fixtureinfo.name2fixturedefs.values()
        if defs
    )


def _unique_nodeids(items: list[pytest.Item]) -> None:
    """One nodeid per test: schemathesis 4 names each API operation's test ``test[POST /predict]``
    but, on pytest 9.2, gives them all the function's nodeid. pytest-xdist tells tests apart by
    nodeid: it ran and reported 1 of the 24 operations of test_fuzz_openapi (serially: 24)."""
    seen = Counter(item.nodeid for item in items)
    for item in items:
        parent, _, name = item.nodeid.rpartition("::")
        if seen[item.nodeid] > 1 and parent and name != item.name:
            item._id = NodeId.parse(f"{parent}::{item.name}")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark, group and order the tests for ``pytest -n N --dist loadgroup`` (make test).

    - A test that uses ``server_factory`` is ``e2e`` (make check leaves those out).
    - A module whose tests share a module-scoped fixture runs on one worker, as one unit:
      spread over workers, each would build it again. A module that names its own
      ``xdist_group`` (the ``load`` group of load-sensitive tests) keeps that one.
    - Modules that start real servers (``e2e``) come first: the long tests start early and
      the short in-process ones fill the end, so no worker finishes long after the others.
    """
    _unique_nodeids(items)
    by_module: dict[str, list[pytest.Item]] = {}
    for item in items:
        if "server_factory" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)  # it starts real servers, whatever its module says
        by_module.setdefault(_module(item), []).append(item)
    for module, tests in by_module.items():
        if any(item.get_closest_marker("xdist_group") for item in tests):
            continue
        if any(_shares_a_fixture(item) for item in tests):
            for item in tests:
                item.add_marker(pytest.mark.xdist_group(module))
    e2e = {m for m, tests in by_module.items() if any(i.get_closest_marker("e2e") for i in tests)}
    items.sort(key=lambda item: _module(item) not in e2e)  # stable: each module keeps its order


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker sends the collected ids
def pytest_collection_finish(session: pytest.Session) -> None:
    """Give each grouped test the nodeid pytest-xdist's loadgroup schedules by ("...@load").

    pytest-xdist 3.8 writes it to ``item._nodeid``, which pytest 9.2 no longer reads (a node's
    id is ``item._id``): without this, every test would be scheduled on its own, each worker
    would build the module fixtures again and the load group would run on every worker.
    """
    if not getattr(session.config.option, "loadgroup", False):
        return
    for item in session.items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        if names and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(sorted(names))}")


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    return copy_registry(tmp_path / "models")


@pytest.fixture
def registry(registry_path: Path) -> Registry:
    return Registry(registry_path)


@pytest.fixture
def make_client(registry_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Build an in-process app on the registry copy, entered and ready."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        settings = Settings(registry=registry_path, poll_interval_s=0, **overrides)
        client = TestClient(build_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if client.get("/health/ready").status_code == 200:
                break
            time.sleep(0.05)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start real ``modelserve serve`` subprocesses; all are stopped at teardown."""
    servers: list[Server] = []

    def make(registry: Path, **kwargs: Any) -> Server:
        server = Server(registry, workdir=tmp_path, **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
