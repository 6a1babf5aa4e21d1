"""Failures that repeat per request or per hop (feedback refused while the log is unavailable,
shadow answers that cannot be judged, shadow rows the log refuses, off-path hops that fail)
are counted every time and logged at their start and end, not once each (issue #26)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import REGISTRY

from app.config import Settings
from app.errors import ErrorReason, RequestError
from app.failure_log import RepeatedFailureLog
from app.metrics import OP_FEEDBACK, OP_PREDICTIONS
from app.monitoring import feedback
from app.monitoring.feedback import FeedbackItem, submit_feedback
from app.monitoring.predlog import PredictionLog
from app.monitoring.records import FeedbackRow, LogBackendError, StoredPrediction
from app.monitoring.shadowlog import ShadowWriter
from app.monitoring.sqlite import SqliteBackend
from app.registry.errors import RegistryError
from app.registry.store import Registry
from app.results import InferenceResult
from app.serving.offpath_protocol import Report, Task
from app.serving.shadow import Job, ShadowQueue
from tests.helpers.lifecycle import NAME


def _failures(operation: str) -> float:
    labels = {"operation": operation}
    return REGISTRY.get_sample_value("modelserve_log_write_failures_total", labels) or 0.0


def _lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [
        f"{r.levelname} {r.getMessage()}"
        for r in caplog.records
        if r.name == logger and r.levelno >= logging.WARNING
    ]


class UnavailableBackend(SqliteBackend):
    """SQLite that refuses every read and write while ``down`` is set (a full or lost disk)."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise LogBackendError(f"SQLite {self.path}: database or disk is full")

    def get_predictions(self, ids: Sequence[str]) -> dict[str, StoredPrediction]:
        self._check()
        return super().get_predictions(ids)

    def add_feedback(self, rows: Sequence[FeedbackRow]) -> list[StoredPrediction]:
        self._check()
        return super().add_feedback(rows)


def test_feedback_refused_while_the_log_is_unavailable_is_one_line(
    tmp_path: Path,
    registry_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #26: one error line per refused feedback request. Now one when the refusals
    start, one when a label is stored again; every refusal still counted and answered 503."""
    caplog.set_level(logging.INFO, logger=feedback.log.name)
    # Per process: a fresh one, so an earlier test's refusals do not count here.
    fresh = RepeatedFailureLog(feedback.log, "feedback not stored", unit="requests")
    monkeypatch.setattr(feedback, "_not_stored", fresh, raising=False)
    meta = Registry(registry_path).metadata(NAME, "1")
    backend = UnavailableBackend(tmp_path / "log.db")
    output = orjson.dumps({"prediction": 0, "probabilities": [1.0, 0.0]}).decode()
    ids = [f"{i:032x}" for i in range(31)]
    backend.write_predictions([(pid, time.time(), NAME, "1", "[]", output) for pid in ids])
    plog = PredictionLog(backend)
    before = _failures(OP_FEEDBACK)
    backend.down = True
    for pid in ids[:30]:
        with pytest.raises(RequestError) as refused:
            submit_feedback(plog, lambda m, v: meta, [FeedbackItem(pid, 0, "")])
        assert refused.value.reason == ErrorReason.LOG_UNAVAILABLE
    assert _failures(OP_FEEDBACK) == before + 30
    lines = _lines(caplog, feedback.log.name)
    assert lines == [
        f"ERROR feedback not stored: SQLite {backend.path}: database or disk is full "
        "(repeats are logged at most every 60 s until it recovers)"
    ]
    backend.down = False
    [stored] = submit_feedback(plog, lambda m, v: meta, [FeedbackItem(ids[30], 0, "")])
    assert stored.outcome == "correct"
    assert _lines(caplog, feedback.log.name)[1:] == [
        "WARNING feedback not stored: recovered after 30 requests in 0 s"
    ]
    backend.close()


def test_shadow_answers_that_cannot_be_judged_by_feedback_are_one_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger=feedback.log.name)
    fresh = RepeatedFailureLog(feedback.log, "shadow answers not judged", unit="answers")
    monkeypatch.setattr(feedback, "_shadow_not_judged", fresh, raising=False)
    output = orjson.dumps({"prediction": 0, "probabilities": None}).decode()
    shadows = [StoredPrediction(f"p{i}", 1.0, NAME, "2", output) for i in range(20)]
    items = {s.id: FeedbackItem(s.id, 0, "") for s in shadows}

    def unreadable(model: str, version: str) -> Any:
        raise RegistryError(f"{model} version {version}: metadata unreadable")

    feedback._judge_shadows(shadows, unreadable, items)
    assert _lines(caplog, feedback.log.name) == [
        f"ERROR shadow answers not judged: {NAME} version 2: {NAME} version 2: metadata "
        "unreadable (repeats are logged at most every 60 s until it recovers)"
    ]


def test_shadow_labels_the_writer_cannot_judge_are_one_line(
    tmp_path: Path, registry_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.monitoring.shadowlog")
    writer = ShadowWriter(Settings(registry=registry_path, prediction_log=tmp_path / "log.db"))
    ids = [f"q{i}" for i in range(20)]
    writer.backend.add_feedback([FeedbackRow(pid, 1.0, '"maybe"', None, None) for pid in ids])
    predictions = np.ones(20, dtype=np.int64)
    assert writer.write(InferenceResult(NAME, "1", predictions, None, ids)) == {}
    lines = _lines(caplog, "app.monitoring.shadowlog")
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"ERROR shadow answers not judged: {NAME} version 1, prediction q0")
    writer.backend.add_feedback([FeedbackRow("good", 1.0, "1", None, None)])
    judged = writer.write(InferenceResult(NAME, "1", np.ones(1, dtype=np.int64), None, ["good"]))
    assert judged == {"correct": 1}
    assert _lines(caplog, "app.monitoring.shadowlog")[1:] == [
        "WARNING shadow answers not judged: recovered after 20 labels in 0 s"
    ]
    writer.close()


def _queue(registry_path: Path) -> ShadowQueue:
    return ShadowQueue(None, registry_path, Settings(registry=registry_path))


def _shadow_task(ids: list[str], version: str = "2") -> Task:
    n = len(ids)
    zeros = np.zeros(n, dtype=np.int64)
    return Task((NAME, version), version, np.zeros((n, 30)), [n], zeros, ids, timed=True)


def test_shadow_rows_the_log_refuses_are_counted_and_one_line_per_outage(
    registry_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.serving.shadow")
    queue = _queue(registry_path)
    before = _failures(OP_PREDICTIONS)
    for hop in range(40):
        ids = [f"h{hop}-{i}" for i in range(3)]
        queue._settle([_shadow_task(ids)], Report(log_failures=3, log_error="disk is full"))
    assert _failures(OP_PREDICTIONS) == before + 120
    assert _lines(caplog, "app.serving.shadow") == [
        "ERROR prediction log: shadow rows not written: disk is full (3 rows; repeats are "
        "logged at most every 60 s until it recovers)"
    ]
    queue._settle([_shadow_task([])], Report())  # nothing logged: not a recovery
    assert len(_lines(caplog, "app.serving.shadow")) == 1
    queue._settle([_shadow_task(["ok"])], Report())
    assert _lines(caplog, "app.serving.shadow")[1:] == [
        "WARNING prediction log: shadow rows not written: recovered after 120 rows in 0 s"
    ]


def test_a_version_failing_off_path_every_hop_is_one_line(
    registry_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.serving.shadow")
    queue = _queue(registry_path)
    for _ in range(25):
        report = Report()
        report.failures[(NAME, "2")] += 2
        report.errors[(NAME, "2")] = "cannot be loaded: no module named 'custom'"
        queue._settle([_shadow_task(["a", "b"])], report)
    queue._settle([_shadow_task(["c"], version="3")], Report())  # another version: no line
    queue._settle([_shadow_task(["d"])], Report())
    assert _lines(caplog, "app.serving.shadow") == [
        f"ERROR {NAME} version 2 failed off-path: cannot be loaded: no module named 'custom' "
        "(2 requests; repeats are logged at most every 60 s until it recovers)",
        f"WARNING {NAME} version 2 failed off-path: recovered after 50 requests in 0 s",
    ]


def test_hops_that_fail_are_one_line_until_one_succeeds(
    registry_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.serving.shadow")
    queue = _queue(registry_path)
    scorer = SimpleNamespace(name=NAME, version="2")
    answered = SimpleNamespace(predictions=np.zeros(1, dtype=np.int64))
    scorer_up = False

    async def score(tasks: list[Task]) -> Report:
        if not scorer_up:
            raise RuntimeError("the off-path scorer exited; restarting it shortly")
        return Report()

    async def close() -> None:
        return None

    queue._scorer = SimpleNamespace(score=score, close=close)  # type: ignore[assignment]

    async def hops(n: int) -> None:
        for i in range(n):
            job = Job(scorer, "2", np.zeros((1, 30)), answered, [f"j{i}"], True)  # type: ignore[arg-type]
            queue.offer(job)
            assert await queue.drain(10)

    async def run() -> None:
        nonlocal scorer_up
        await hops(30)
        scorer_up = True
        await hops(2)
        await queue.close()

    asyncio.run(run())
    assert _lines(caplog, "app.serving.shadow") == [
        "ERROR off-path scoring failed: the off-path scorer exited; restarting it shortly "
        "(repeats are logged at most every 60 s until it recovers)",
        "WARNING off-path scoring failed: recovered after 30 jobs in 0 s",
    ]
