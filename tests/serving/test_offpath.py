"""The off-path scorer process: a shadow's outputs are what the model gives each request's rows
in-process (merged calls only where that is bit for bit exact), DataFrame requests included,
and a scorer that dies is replaced while production keeps answering."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from app.config import Settings
from app.registry.roles import RoleAliases
from app.registry.store import Registry
from app.serving.shadow import ScorerProcess
from app.training.train import fitted_fields
from tests.helpers.app_factory import ready_client
from tests.helpers.promtext import total, wait_total
from tests.helpers.toy_models import TOY, SlowModel, iris, toy_registry

pytestmark = pytest.mark.slow  # each app starts its off-path scorer process


class BatchSensitive(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Probabilities that move in the last bits with the number of rows scored together, as
    some BLAS kernels do: the server must never merge requests for it."""

    def fit(self, X: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> BatchSensitive:
        self.inner_ = LogisticRegression(max_iter=500).fit(X, y)
        self.classes_ = self.inner_.classes_
        return self

    def predict(self, X: npt.NDArray[np.float64]) -> Any:
        return self.inner_.predict(X)

    def predict_proba(self, X: npt.NDArray[np.float64]) -> Any:
        proba = self.inner_.predict_proba(X)
        return proba * (1.0 + len(X) * 2.0**-50)


class Stall(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Scores like a tree, but a row whose first value is ``STALL`` takes 6 s (a model stuck in
    a call); the rows it is loaded and probed with never do."""

    STALL = 99.0

    def fit(self, X: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> Stall:
        self.inner_ = SlowModel(0.0).fit(X, y)
        self.classes_ = self.inner_.classes_
        return self

    def _wait(self, X: npt.NDArray[np.float64]) -> None:
        if np.any(np.asarray(X)[:, 0] == self.STALL):
            time.sleep(6.0)

    def predict(self, X: npt.NDArray[np.float64]) -> Any:
        self._wait(X)
        return self.inner_.predict(X)

    def predict_proba(self, X: npt.NDArray[np.float64]) -> Any:
        self._wait(X)
        return self.inner_.predict_proba(X)


def _shadow_rows(path: Path) -> dict[str, Any]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT prediction_id, output FROM shadow_predictions").fetchall()
    return {pid: json.loads(output) for pid, output in rows}


MARK = 7.77  # a first value no iris row and no probe row has


def _served(tmp_path: Path, shadow: Any) -> tuple[Settings, str]:
    root = tmp_path / "toy-models"
    registry = toy_registry(root, delay_s=0.0)
    X, y, names = iris()
    meta = registry.register(
        TOY, shadow, fitted_fields(shadow, "classification", names, X, y, X[0])
    )
    RoleAliases(registry).set_shadow(TOY, meta.version)
    settings = Settings(
        registry=root, default_model=TOY, poll_interval_s=0, prediction_log=tmp_path / "log.db"
    )
    return settings, meta.version


@pytest.mark.parametrize("merges", [False, True], ids=["batch-sensitive", "row-wise"])
def test_shadow_outputs_are_each_requests_own_whatever_the_hop(
    tmp_path: Path, merges: bool
) -> None:
    X, y, _ = iris()
    # 50 ms a shadow call on the requests' rows (marked by their first value; the load-time
    # probe's rows are not slowed, so its 2 s budget holds): requests sent meanwhile queue
    # for the next hop, however fast the scorer process starts on a loaded machine.
    shadow = (
        SlowModel(0.05, only_first_value=MARK).fit(X, y) if merges else BatchSensitive().fit(X, y)
    )
    if not merges:  # the toy bites: merged rows differ from rows scored alone
        assert (
            shadow.predict_proba(X[:7]).tolist()
            != np.vstack([shadow.predict_proba(X[i : i + 1]) for i in range(7)]).tolist()
        )
    settings, version = _served(tmp_path, shadow)
    labels = {"model": TOY, "version": version}
    requests: list[tuple[list[str], npt.NDArray[np.float64]]] = []
    with ready_client(settings) as client:
        before = client.get("/metrics").text
        # Sent while the scorer process starts: its first hops hold many requests.
        start = 0
        for size in (1, 2, 5, 1, 3, 8, 1, 1, 4, 2) * 3:
            rows = X[start : start + size].copy()
            rows[0, 0] = MARK
            start += size
            body = client.post("/predict", json={"instances": rows.tolist()}).json()
            requests.append((body["prediction_ids"], rows))
        sent = sum(len(ids) for ids, _ in requests)
        agreement = "modelserve_agreement_total"
        assert wait_total(
            lambda: client.get("/metrics").text,
            agreement,
            labels,
            total(before, agreement, labels) + sent,
        ) == (total(before, agreement, labels) + sent)
        calls = "modelserve_inference_duration_seconds_count"
        made = total(client.get("/metrics").text, calls, labels) - total(before, calls, labels)
        assert client.app.state.services.prediction_log.flush(10)  # type: ignore[attr-defined]
    logged = _shadow_rows(tmp_path / "log.db")
    for ids, rows in requests:
        want = shadow.predict_proba(rows).tolist()  # the request's rows in one call
        assert [logged[pid]["probabilities"] for pid in ids] == want
        assert [logged[pid]["prediction"] for pid in ids] == shadow.predict(rows).tolist()
    if merges:
        assert made < len(requests), "a row-wise model's queued requests share model calls"
    else:
        assert made == len(requests), "a batch-sensitive model gets one call per request"


def test_dataframe_requests_are_split_back_exactly(tmp_path: Path) -> None:
    """A mixed-type pipeline's requests travel merged into one frame and are scored apart."""
    import joblib

    from tests.helpers.mixed import MIXED, TARGET, churn_frame, fit_churn, register_churn
    from tests.helpers.support import run_cli

    root = tmp_path / "models"
    register_churn(root, tmp_path)
    refit: Any = fit_churn(churn_frame(seed=11))
    joblib.dump(refit, tmp_path / "v2.joblib")
    done = run_cli(
        "register", MIXED, str(tmp_path / "v2.joblib"), "--sample",
        str(tmp_path / f"{MIXED}.csv"), "--target", TARGET, "--registry", str(root),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    RoleAliases(Registry(root)).set_shadow(MIXED, "2")
    frame = churn_frame(n=60, seed=5).drop(columns=TARGET)
    settings = Settings(
        registry=root, default_model=MIXED, poll_interval_s=0, prediction_log=tmp_path / "m.db"
    )
    sent: list[tuple[list[str], Any]] = []
    labels = {"model": MIXED, "version": "2"}
    with ready_client(settings) as client:
        before = total(client.get("/metrics").text, "modelserve_agreement_total", labels)
        for start, stop in ((0, 1), (1, 4), (4, 5), (5, 12), (12, 13), (13, 30), (30, 60)):
            part = frame.iloc[start:stop]
            records = json.loads(part.to_json(orient="records"))
            body = client.post("/predict", json={"instances": records}).json()
            sent.append((body["prediction_ids"], part))
        counted = wait_total(
            lambda: client.get("/metrics").text,
            "modelserve_agreement_total",
            labels,
            before + len(frame),
        )
        assert counted == before + len(frame)
        assert client.app.state.services.prediction_log.flush(10)  # type: ignore[attr-defined]
    logged = _shadow_rows(tmp_path / "m.db")
    for ids, part in sent:
        assert [logged[pid]["prediction"] for pid in ids] == refit.predict(part).tolist()


def _scorer_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"app.serving.offpath" in cmdline:
            pids.append(int(entry.name))
    return pids


def test_a_killed_scorer_is_replaced_and_production_keeps_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ScorerProcess, "RESPAWN_AFTER_S", 0.0)
    X, y, _ = iris()
    settings, version = _served(tmp_path, LogisticRegression(max_iter=500).fit(X, y))
    labels = {"model": TOY, "version": version}
    agreement, failures = "modelserve_agreement_total", "modelserve_shadow_failures_total"
    with ready_client(settings) as client:
        text = client.get("/metrics").text
        agreed0, failed0 = total(text, agreement, labels), total(text, failures, labels)
        assert client.post("/predict", json={"instances": X[:3].tolist()}).status_code == 200
        assert (
            wait_total(lambda: client.get("/metrics").text, agreement, labels, agreed0 + 3)
            == agreed0 + 3
        )
        (pid,) = _scorer_pids()
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE, "it only takes CPU nothing wants"
        # Every thread of it, BLAS's too (started at import, before it went idle).
        tids = [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
        assert len(tids) > 1
        assert {os.sched_getscheduler(tid) for tid in tids} == {os.SCHED_IDLE}
        os.kill(pid, signal.SIGKILL)
        for row in X[:45]:
            response = client.post("/predict", json={"instances": [row.tolist()]})
            assert response.status_code == 200
        # Every row is accounted for: scored (agreement) or lost with the killed scorer (which
        # runs at idle priority: with other tests busy on every core it waits for the CPU).
        deadline = time.monotonic() + 120
        while True:
            text = client.get("/metrics").text
            agreed = total(text, agreement, labels) - agreed0 - 3
            failed = total(text, failures, labels) - failed0
            if agreed + failed >= 45 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert agreed + failed == 45
        assert agreed >= 5, "a new scorer took over"
        (new_pid,) = _scorer_pids()
        assert new_pid != pid
    assert _scorer_pids() == [], "the server stops its scorer when it stops"


def test_a_stuck_scorer_is_killed_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shadow stuck 6 s on some rows, with hops allowed 2 s: that hop's scorer is killed, its
    jobs count as failures, production never waits, and a new scorer scores what follows.

    A scorer's first hop includes its start-up and loading the version, which takes over 2 s on
    a busy 2-core host: the first hop of each scorer runs under the default limit, and only the
    hop with the stuck row under the 2 s one."""
    startup_limit = ScorerProcess.HOP_TIMEOUT_S
    assert startup_limit > 6.0, "the default must let a scorer start and load on a busy host"
    monkeypatch.setattr(ScorerProcess, "RESPAWN_AFTER_S", 0.0)
    X, y, _ = iris()
    settings, version = _served(tmp_path, Stall().fit(X, y))
    labels = {"model": TOY, "version": version}
    agreement, failures = "modelserve_agreement_total", "modelserve_shadow_failures_total"
    stuck = X[:1].copy()
    stuck[0, 0] = Stall.STALL
    with ready_client(settings) as client:

        def scrape() -> str:
            return str(client.get("/metrics").text)

        text = scrape()
        agreed0, failed0 = total(text, agreement, labels), total(text, failures, labels)
        assert client.post("/predict", json={"instances": X[:2].tolist()}).status_code == 200
        assert wait_total(scrape, agreement, labels, agreed0 + 2) == agreed0 + 2
        (pid,) = _scorer_pids()
        monkeypatch.setattr(ScorerProcess, "HOP_TIMEOUT_S", 2.0)  # this scorer is up and loaded
        started = time.monotonic()
        assert client.post("/predict", json={"instances": stuck.tolist()}).status_code == 200
        assert time.monotonic() - started < 1.0, "production never waits for the shadow"
        assert wait_total(scrape, failures, labels, failed0 + 1, timeout_s=20) == failed0 + 1
        # The next hop starts a new scorer, which loads the version again.
        monkeypatch.setattr(ScorerProcess, "HOP_TIMEOUT_S", startup_limit)
        assert client.post("/predict", json={"instances": X[2:5].tolist()}).status_code == 200
        assert wait_total(scrape, agreement, labels, agreed0 + 5) == agreed0 + 5
        assert _scorer_pids() not in ([], [pid]), "a new scorer took over"
    assert _scorer_pids() == []


def test_a_scorer_still_starting_when_the_server_stops_does_not_outlive_it(
    tmp_path: Path,
) -> None:
    """Shutdown cancels the shadow queue's hop; if that hop was starting the scorer (imports
    and loading take seconds on a busy host), the half-started scorer is killed, not left to
    finish starting and linger. Here it is held still (SIGSTOP) mid-start, so it could only
    go by being killed."""
    X, y, _ = iris()
    settings, _ = _served(tmp_path, LogisticRegression(max_iter=500).fit(X, y))

    async def stop_while_starting() -> list[int]:
        scorer = ScorerProcess(settings.registry, settings)
        hop = asyncio.ensure_future(scorer.score([]))
        while not (started := _scorer_pids()):
            await asyncio.sleep(0.005)
        os.kill(started[0], signal.SIGSTOP)
        await asyncio.sleep(0.1)
        assert not hop.done(), "still starting"
        hop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hop
        await scorer.close()
        deadline = time.monotonic() + 10
        while _scorer_pids() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return _scorer_pids()

    try:
        assert asyncio.run(stop_while_starting()) == []
    finally:
        for pid in _scorer_pids():
            os.kill(pid, signal.SIGKILL)


def test_shadow_rows_the_log_refuses_are_counted_and_production_is_logged(
    tmp_path: Path,
) -> None:
    """The scorer writes a shadow's rows itself; when the log refuses them they count in
    modelserve_log_write_failures_total{operation="predictions"}, and production's own rows
    and answers are untouched."""
    X, y, _ = iris()
    settings, version = _served(tmp_path, LogisticRegression(max_iter=500).fit(X, y))
    labels = {"model": TOY, "version": version}
    failed = "modelserve_log_write_failures_total"
    refused = {"operation": "predictions"}
    with ready_client(settings) as client:
        plog = client.app.state.services.prediction_log  # type: ignore[attr-defined]
        agreed = total(client.get("/metrics").text, "modelserve_agreement_total", labels)
        first = client.post("/predict", json={"instances": X[:1].tolist()}).json()
        wait_total(
            lambda: client.get("/metrics").text, "modelserve_agreement_total", labels, agreed + 1
        )
        assert plog.flush(10)  # the schema exists, and the first shadow row
        with sqlite3.connect(tmp_path / "log.db") as db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON shadow_predictions "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        text = client.get("/metrics").text
        agreed0, failed0 = (
            total(text, "modelserve_agreement_total", labels),
            total(text, failed, refused),
        )
        ids: list[str] = []
        for start in range(0, 12, 3):
            body = client.post("/predict", json={"instances": X[start : start + 3].tolist()})
            assert body.status_code == 200
            ids += body.json()["prediction_ids"]
        assert (
            wait_total(lambda: client.get("/metrics").text, failed, refused, failed0 + 12)
            == failed0 + 12
        )
        assert total(client.get("/metrics").text, "modelserve_agreement_total", labels) == (
            agreed0 + 12
        ), "agreement is counted whatever the log does"
        assert plog.flush(10)
        assert set(plog.backend.get_predictions(ids)) == set(ids)
    assert list(_shadow_rows(tmp_path / "log.db")) == first["prediction_ids"]
