"""Prediction ids: UUIDv7s, unique, and in time order, so the log's id indexes grow at one end."""

from __future__ import annotations

import time
import uuid

from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from app.serving.scoring import new_ids


def test_ids_are_uuid7_with_the_minting_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ids = new_ids(500)
    after = time.time_ns() // 1_000_000
    for pid in ids:
        assert len(pid) == 32 and pid == pid.lower()
        parsed = uuid.UUID(hex=pid)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122, pid
        assert before <= int(pid[:12], 16) <= after


def test_ids_are_unique_and_later_ones_sort_after() -> None:
    first = new_ids(2_000)
    time.sleep(0.002)  # the next millisecond at least
    second = [pid for _ in range(2_000) for pid in new_ids(1)]
    assert len(set(first + second)) == 4_000
    assert max(first) < min(second)
    # The 74 random bits really vary: every position after the time takes many values.
    for position in (13, 14, 15, 17, 20, 25, 31):
        assert len({pid[position] for pid in first}) > 8, position
    assert {pid[16] for pid in first} == set("89ab")


def test_a_response_carries_one_uuid7_per_row(client: TestClient) -> None:
    rows = [row.tolist() for row in load_breast_cancer().data[:5]]
    body = client.post("/predict", json={"instances": rows}).json()
    ids = body["prediction_ids"]
    assert len(set(ids)) == 5
    assert all(uuid.UUID(hex=pid).version == 7 for pid in ids)
