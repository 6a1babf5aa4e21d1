"""Micro-batching: concurrent requests share model calls yet each gets exactly its own answer."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.registry.store import Registry
from tests.helpers.promtext import total
from tests.helpers.support import Server, copy_registry
from tests.helpers.toy_models import POISON, TOY, SlowModel, iris, toy_env, toy_registry

N_REQUESTS = 48


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # 50 ms per model call: while one call runs, the other requests pile up behind it.
    work = tmp_path_factory.mktemp("batching")
    registry = toy_registry(work / "models", delay_s=0.05)
    with Server(registry.root, workdir=work, env=toy_env()) as server:
        server.wait_ready()
        yield server


def _requests(seed: int) -> list[tuple[list[Any], str | None]]:
    """(instances, field of the expected error or None): a quarter of them are invalid."""
    X, _, names = iris()
    rng = random.Random(seed)
    out: list[tuple[list[Any], str | None]] = []
    for i in range(N_REQUESTS):
        rows: list[Any] = [
            [float(v) + rng.uniform(-0.3, 0.3) for v in X[rng.randrange(len(X))]]
            for _ in range(rng.randint(1, 4))
        ]
        bad = rng.randrange(len(rows))
        match i % 8:
            case 1:
                rows[bad][2] = "wide"
                out.append((rows, f"instances[{bad}][2]"))
            case 5:
                rows[bad] = rows[bad][:3]
                out.append((rows, f"instances[{bad}]"))
            case 6:
                rows[bad] = dict(zip(names, rows[bad], strict=True))
                rows[bad][names[1]] = None
                out.append((rows, f"instances[{bad}].{names[1]}"))
            case _:
                out.append((rows, None))
    return out


async def _post_all(url: str, bodies: list[Any]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))


def _batch_histogram(server: Server) -> tuple[float, float]:
    """(model calls, rows scored) of the toy model so far."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    labels = {"model": TOY}
    return (
        total(text, "modelserve_batch_size_count", labels),
        total(text, "modelserve_batch_size_sum", labels),
    )


@pytest.mark.e2e
def test_concurrent_mixed_requests_each_get_their_own_result(toy_server: Server) -> None:
    X, y, _ = iris()
    reference = SlowModel(0.0).fit(X, y)
    cases = _requests(seed=7)
    calls_before, rows_before = _batch_histogram(toy_server)

    responses = asyncio.run(_post_all(toy_server.url, [{"instances": c} for c, _ in cases]))

    valid_rows = 0
    for (instances, bad_field), response in zip(cases, responses, strict=True):
        body = response.json()
        if bad_field is not None:
            assert response.status_code == 422, body
            assert body["error"]["field"] == bad_field
            continue
        assert response.status_code == 200, body
        matrix = np.asarray(instances, dtype=np.float64)
        assert body["predictions"] == reference.predict(matrix).tolist()
        np.testing.assert_allclose(
            body["probabilities"], reference.predict_proba(matrix), rtol=1e-12
        )
        assert len(set(body["prediction_ids"])) == len(matrix)
        valid_rows += len(matrix)

    calls, rows = _batch_histogram(toy_server)
    assert rows - rows_before == valid_rows  # invalid requests never reach the model
    # Far fewer model calls than valid requests: they were coalesced.
    valid_requests = sum(1 for _, bad in cases if bad is None)
    assert calls - calls_before < valid_requests / 2


@pytest.mark.e2e
def test_a_failing_request_does_not_fail_its_batch_mates(toy_server: Server) -> None:
    X, _, _ = iris()
    good = [[float(v) for v in X[i]] for i in range(0, 150, 10)]
    bodies: list[Any] = [{"instances": [row]} for row in good]
    bodies.insert(5, {"instances": [good[1], [POISON, *good[0][1:]]]})
    merged_failures = 0
    for _ in range(3):  # until the poisoned request was merged with others at least once
        responses = asyncio.run(_post_all(toy_server.url, bodies))
        assert responses[5].status_code == 422, responses[5].text
        assert responses[5].json()["error"]["type"] == "rejected_by_model"
        others = responses[:5] + responses[6:]
        assert [r.status_code for r in others] == [200] * len(good)
        for row, response in zip(good, others, strict=True):
            assert len(response.json()["predictions"]) == 1, row
        merged_failures = toy_server.logs().count("scoring requests one by one")
        if merged_failures:
            break
    assert merged_failures >= 1, toy_server.logs()[-2000:]


@pytest.mark.e2e
def test_lone_request_on_idle_server_does_not_wait_for_a_batch(
    tmp_path: Path, server_factory: Any
) -> None:
    registry = copy_registry(tmp_path / "models")
    env = {"MODELSERVE_BATCH_MAX_WAIT_MS": "30000", "MODELSERVE_POLL_INTERVAL_S": "0"}
    server = server_factory(registry, env=env)
    server.wait_ready()
    row = Registry(registry).metadata("breast-cancer", "1").example
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(3):  # the second and third arrive right after a call: still no wait
            start = time.monotonic()
            response = client.post("/predict", json={"instances": [row]})
            elapsed = time.monotonic() - start
            assert response.status_code == 200, response.text
            assert elapsed < 1.0, f"a lone request took {elapsed:.2f} s with max wait 30 s"
