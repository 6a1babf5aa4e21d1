"""A 10% canary over real servers: 10 +- 1.5% of 10,000 requests, on one process, on two workers
and on two servers sharing one registry; a routing key always lands on one version."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sklearn.datasets import load_breast_cancer

from app.registry.roles import RoleAliases
from app.registry.store import Registry
from tests.helpers.lifecycle import NAME, train_quick
from tests.helpers.marks import LOAD_SENSITIVE
from tests.helpers.support import Server

pytestmark = [pytest.mark.e2e, LOAD_SENSITIVE]
REQUESTS = 10_000


def _versions(urls: list[str], n: int, threads: int = 16) -> Counter[str]:
    """``n`` one-row predictions spread over ``urls`` by ``threads`` connections."""
    row = load_breast_cancer().data[5].tolist()
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[str] = []

    def work(i: int) -> None:
        local: Counter[str] = Counter()
        with httpx.Client(base_url=urls[i % len(urls)], timeout=30) as client:
            for _ in range(n // threads):
                response = client.post("/predict", json={"instances": [row]})
                if response.status_code != 200:
                    errors.append(response.text)
                    return
                local[response.json()["version"]] += 1
        with lock:
            seen.update(local)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors[:3]
    return seen


def _sticky(urls: list[str]) -> None:
    """Keyed requests, each on a fresh connection (any worker, any server): one version per key."""
    row = load_breast_cancer().data[5].tolist()
    for key in ("alice", "bob", "carol", "dave", "erin", "frank"):
        answers = set()
        for i in range(12):
            with httpx.Client(base_url=urls[i % len(urls)], timeout=30) as client:
                body = client.post(
                    "/predict", json={"instances": [row]}, headers={"X-Routing-Key": key}
                ).json()
            answers.add(body["version"])
        assert len(answers) == 1, (key, answers)


@pytest.fixture
def canary_registry(registry_path: Path) -> Path:
    train_quick(registry_path, **{"estimator.params.C": 0.02})
    RoleAliases(Registry(registry_path)).start_canary(NAME, "2", 10, reason="canary")
    return registry_path


@pytest.mark.parametrize("layout", ["one-process", "two-workers", "two-servers"])
def test_a_ten_percent_canary_answers_ten_percent(
    canary_registry: Path, server_factory: Callable[..., Server], layout: str
) -> None:
    args = ("--workers", "2") if layout == "two-workers" else ()
    servers = [server_factory(canary_registry, args=args)]
    if layout == "two-servers":
        servers.append(server_factory(canary_registry))
    for server in servers:
        server.wait_ready()
    urls = [s.url for s in servers]
    seen = _versions(urls, REQUESTS)
    share = seen["2"] / sum(seen.values())
    print(f"{layout}: {dict(seen)} canary share {share:.4f}")
    assert set(seen) == {"1", "2"}
    assert abs(share - 0.10) <= 0.015, seen
    _sticky(urls)
