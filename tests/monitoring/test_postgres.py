"""The prediction-log backends against real databases: SQLite files and a real PostgreSQL.

The contract tests run on both backends; the PostgreSQL ones skip (with the reason) only when
PostgreSQL is not installed at all. The end-to-end test runs two ``modelserve serve`` processes
("replicas") on one PostgreSQL database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.monitoring.backend import open_backend
from app.monitoring.postgres import PostgresBackend
from app.monitoring.records import DuplicateFeedbackError, FeedbackRow, LogBackendError
from app.monitoring.sqlite import SqliteBackend
from tests.helpers.monitoring import metric_sum
from tests.helpers.support import Server, free_port
from tests.monitoring.conftest import BackendFactory


def _prediction(pid: str, at: float, version: str = "1") -> tuple[str, float, str, str, str, str]:
    output = '{"prediction": 1, "probabilities": [0.25, 0.75]}'
    return (pid, at, "breast-cancer", version, "[1.5, 2.0]", output)


def _label(pid: str, at: float | None = None) -> FeedbackRow:
    return FeedbackRow(pid, time.time() if at is None else at, "1", "correct", None)


def test_predictions_round_trip_and_a_repeated_id_is_ignored(make_backend: BackendFactory) -> None:
    backend = make_backend()
    now = time.time()
    backend.write_predictions([_prediction("a", now), _prediction("b", now, "2")])
    backend.write_predictions([_prediction("a", now + 1, "9")])  # same id: first one stays
    stored = backend.get_predictions(["a", "b", "missing"])
    assert set(stored) == {"a", "b"}
    assert (stored["a"].version, stored["a"].time, stored["b"].version) == ("1", now, "2")
    assert stored["a"].output == '{"prediction": 1, "probabilities": [0.25, 0.75]}'
    assert make_backend().get_predictions(["b"])["b"].model == "breast-cancer"  # other process


def test_feedback_batch_is_stored_whole_or_not_at_all(make_backend: BackendFactory) -> None:
    backend = make_backend()
    backend.write_predictions([_prediction(p, time.time()) for p in ("a", "b", "c")])
    backend.add_feedback([_label("a")])
    with pytest.raises(DuplicateFeedbackError) as raised:
        backend.add_feedback([_label("b"), _label("a"), _label("c")])
    assert raised.value.prediction_id == "a"
    assert backend.has_feedback(["a", "b", "c"]) == {"a"}  # b was rolled back with the batch
    backend.add_feedback([_label("b"), _label("c")])  # the connection is still usable
    assert make_backend().has_feedback(["a", "b", "c"]) == {"a", "b", "c"}


def test_two_writers_racing_for_one_label_exactly_one_wins(make_backend: BackendFactory) -> None:
    setup = make_backend()
    setup.write_predictions([_prediction(f"p{i}", time.time()) for i in range(20)])
    racers = [make_backend(), make_backend()]
    wins: list[list[str]] = [[], []]
    barrier = threading.Barrier(2)

    def race(k: int) -> None:
        barrier.wait(30)
        for i in range(20):
            try:
                racers[k].add_feedback([_label(f"p{i}")])
                wins[k].append(f"p{i}")
            except DuplicateFeedbackError:
                pass

    threads = [threading.Thread(target=race, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(wins[0] + wins[1]) == sorted(f"p{i}" for i in range(20))


def test_purge_deletes_old_predictions_and_labels(make_backend: BackendFactory) -> None:
    backend = make_backend()
    now = time.time()
    backend.write_predictions([_prediction("old", now - 7200), _prediction("new", now)])
    backend.add_feedback([_label("old", now - 7200), _label("new", now)])
    assert backend.purge(now - 3600) == 1
    assert set(backend.get_predictions(["old", "new"])) == {"new"}
    assert backend.has_feedback(["old", "new"]) == {"new"}


def test_replicas_starting_together_all_create_or_find_the_schema(
    make_backend: BackendFactory,
) -> None:
    backends = [make_backend() for _ in range(6)]
    barrier = threading.Barrier(len(backends))
    errors: list[BaseException] = []

    def first_write(k: int) -> None:
        barrier.wait(30)
        try:
            backends[k].write_predictions([_prediction(f"r{k}", time.time())])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_write, args=(k,)) for k in range(len(backends))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(make_backend().get_predictions([f"r{k}" for k in range(6)])) == 6


def _terminate_log_connections(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'modelserve-%'"
        ).fetchall()
    return len(rows)


def test_postgres_reconnects_after_the_server_drops_its_connections(pg_url: str) -> None:
    backend = PostgresBackend(pg_url)
    backend.write_predictions([_prediction("a", time.time()), _prediction("b", time.time())])
    assert backend.has_feedback(["a"]) == set()  # opens the feedback connection
    assert _terminate_log_connections(pg_url) == 2
    # Idempotent calls retry once on a new connection: nothing is lost.
    backend.write_predictions([_prediction("c", time.time())])
    assert set(backend.get_predictions(["a", "b", "c"])) == {"a", "b", "c"}
    assert _terminate_log_connections(pg_url) == 2
    # A label is never retried (its commit may have landed): this one fails, the next works.
    with pytest.raises(LogBackendError):
        backend.add_feedback([_label("a")])
    backend.add_feedback([_label("a")])
    assert backend.has_feedback(["a", "b"]) == {"a"}
    backend.close()


def test_database_url_selects_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_backend("postgresql://u@127.0.0.1/db", tmp_path / "x"), PostgresBackend)
    assert isinstance(open_backend("postgres://127.0.0.1/db", tmp_path / "x"), PostgresBackend)
    assert isinstance(open_backend(None, tmp_path / "x.db"), SqliteBackend)
    with pytest.raises(ValueError, match="invalid PostgreSQL URL"):
        open_backend("postgresql://u@127.0.0.1/db?bogus=1", tmp_path / "x")


def _failures(operation: str) -> float:
    labels = {"operation": operation}
    return REGISTRY.get_sample_value("modelserve_log_write_failures_total", labels) or 0.0


def test_unreachable_database_fails_feedback_not_predictions(
    make_client: Callable[..., TestClient],
) -> None:
    url = f"postgresql://modelserve@127.0.0.1:{free_port()}/modelserve"  # nothing listens
    client = make_client(database_url=url, prediction_log_flush_ms=50)
    row = client.get("/models/breast-cancer").json()["metadata"][0]["example"]
    before = _failures("predictions")
    resp = client.post("/predict", json={"instances": [row, row]})
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 30
    while _failures("predictions") < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _failures("predictions") == before + 2
    pid = resp.json()["prediction_ids"][0]
    fb = client.post("/feedback", json={"prediction_id": pid, "label": 0})
    assert fb.status_code == 503, fb.text
    assert fb.json()["error"]["type"] == "log_unavailable"
    assert "PostgreSQL" in fb.json()["error"]["message"]


def _wait_logged(url: str, pid: str) -> None:
    """Until replica A's writer has committed the row (it flushes every 150 ms)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            found = conn.execute("SELECT 1 FROM predictions WHERE id = %s", (pid,)).fetchone()
            if found:
                return
            time.sleep(0.05)
    raise TimeoutError(f"prediction {pid} never reached the shared log")


@pytest.mark.e2e
def test_two_replicas_share_one_postgres_log(
    server_factory: Callable[..., Server], registry_path: Path, pg_url: str
) -> None:
    replica_a = server_factory(registry_path, args=("--database-url", pg_url))
    replica_b = server_factory(registry_path, env={"MODELSERVE_DATABASE_URL": pg_url})
    replica_a.wait_ready()
    replica_b.wait_ready()
    with httpx.Client(timeout=30) as http:
        row = http.get(replica_a.url + "/models/breast-cancer").json()["metadata"][0]["example"]
        made = http.post(replica_a.url + "/predict", json={"instances": [row]})
        assert made.status_code == 200, made.text
        pid, prediction = made.json()["prediction_ids"][0], made.json()["predictions"][0]
        _wait_logged(pg_url, pid)
        first = http.post(replica_b.url + "/feedback", json={"prediction_id": pid, "label": 1})
        assert first.status_code == 200, first.text
        assert first.json()["feedback"][0]["prediction_id"] == pid
        for replica in (replica_a, replica_b):
            again = http.post(replica.url + "/feedback", json={"prediction_id": pid, "label": 1})
            assert again.status_code == 409, again.text
            assert again.json()["error"]["type"] == "duplicate_feedback"
        metrics_a = http.get(replica_a.url + "/metrics").text
        metrics_b = http.get(replica_b.url + "/metrics").text
    outcome = "correct" if prediction == 1 else "incorrect"
    assert metric_sum(metrics_a, "modelserve_predictions_total") == 1
    assert metric_sum(metrics_b, "modelserve_predictions_total") == 0
    assert metric_sum(metrics_a, "modelserve_feedback_total") == 0
    assert metric_sum(metrics_b, "modelserve_feedback_total", outcome=outcome) == 1
    assert metric_sum(metrics_b, "modelserve_log_write_failures_total") == 0


TRICKY = [
    '{"prediction": "caf\\u00e9 \\"quoted\\" back\\\\slash", "probabilities": null}',
    '{"prediction": "line\\nbreak\\ttab \\u0000 nul", "probabilities": [1e-300, 0.1]}',
    '{"prediction": "日本語 😀", "probabilities": [5e-324, 1.7976931348623157e308]}',
]


@pytest.mark.parametrize("batched", [True, False], ids=["one-statement", "executemany"])
def test_a_batch_is_stored_exactly_as_written(
    make_backend: BackendFactory, batched: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text with quotes, escapes, control characters and non-ASCII, and times to the last bit,
    come back as written, in both tables; an id repeated within one batch keeps its first row.
    (SQLite sends a batch as one JSON array where it can, else row by row.)"""
    import app.monitoring.sqlite as sqlite_backend

    monkeypatch.setattr(sqlite_backend, "JSON_BATCHES", batched)
    backend = make_backend()
    at = [1764633600.123456789, 1764633600.1 + 2.0**-22, 1.0 / 3.0]
    rows = [
        (f"p{i}", t, "m\"odel'", f"v{i}", '["a\\"b", null, 1.5e-310]', out)
        for i, (t, out) in enumerate(zip(at, TRICKY, strict=True))
    ]
    backend.write_predictions([*rows, ("p0", 9.0, "other", "9", "[]", "{}")])
    stored = backend.get_predictions([r[0] for r in rows])
    assert [(s.id, s.time, s.model, s.version, s.output) for s in (stored[r[0]] for r in rows)] == [
        (r[0], r[1], r[2], r[3], r[5]) for r in rows
    ]
    assert backend.write_shadow([(r[0], r[1], r[2], "shadow", r[5]) for r in rows]) == []
    labels = [FeedbackRow(r[0], 2.0, "1", None, None) for r in rows]
    shadow = sorted(backend.add_feedback(labels), key=lambda s: s.id)
    assert [(s.id, s.time, s.version, s.output) for s in shadow] == [
        (r[0], r[1], "shadow", r[5]) for r in rows
    ]
