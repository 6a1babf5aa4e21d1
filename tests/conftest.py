"""Shared fixtures: a private registry copy, an in-process client, real server processes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.registry.store import Registry
from tests.helpers.app_factory import build_app
from tests.helpers.support import Server, copy_registry


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
