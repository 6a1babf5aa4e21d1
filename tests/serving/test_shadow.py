"""Shadow and canary in one process: answers unchanged, both outputs logged, agreement counted
from the same rows the log holds, labels judged against the shadow, overload dropped."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from app.config import Settings
from app.registry.roles import RoleAliases
from app.registry.store import Registry
from app.training.train import fitted_fields
from tests.helpers.app_factory import build_app, ready_client
from tests.helpers.lifecycle import NAME, train_quick
from tests.helpers.promtext import total, wait_total
from tests.helpers.toy_models import TOY, SlowModel, iris, toy_registry


@pytest.fixture
def shadowed(registry_path: Path) -> Registry:
    """breast-cancer: production 1, version 2 (a weaker C) as its shadow."""
    train_quick(registry_path, **{"estimator.params.C": 0.002})
    registry = Registry(registry_path)
    RoleAliases(registry).set_shadow(NAME, "2")
    return registry


@pytest.mark.slow  # the app starts its off-path scorer process
def test_shadow_leaves_answers_exact_and_logs_both_outputs(
    shadowed: Registry, make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    log_path = tmp_path / "log.db"
    client = make_client(prediction_log=log_path)
    prod = shadowed.load(NAME, "1").estimator
    shadow = shadowed.load(NAME, "2").estimator
    data = load_breast_cancer().data
    before = client.get("/metrics").text
    agree0 = total(before, "modelserve_agreement_total", {"model": NAME, "version": "2"})
    sent: list[str] = []
    requests: list[tuple[list[str], np.ndarray]] = []
    start = 0
    for size in (1, 3, 17, 1, 64, 2) * 3:
        rows = data[start : start + size]
        start = (start + size) % (len(data) - 64)
        body = client.post("/predict", json={"instances": rows.tolist()}).json()
        assert body["version"] == "1"
        # Production's answer is bit for bit the model's own, shadow or not.
        assert body["predictions"] == prod.predict(rows).tolist()
        assert body["probabilities"] == prod.predict_proba(rows).tolist()
        sent.extend(body["prediction_ids"])
        requests.append((body["prediction_ids"], rows))
    counted = wait_total(
        lambda: client.get("/metrics").text,
        "modelserve_agreement_total",
        {"model": NAME, "version": "2"},
        agree0 + len(sent),
    )
    assert counted - agree0 == len(sent)
    services = client.app.state.services  # type: ignore[attr-defined]
    assert services.prediction_log.flush(10)

    with sqlite3.connect(log_path) as db:
        logged = db.execute(
            "SELECT p.id, p.output, s.version, s.output FROM predictions p "
            "JOIN shadow_predictions s ON s.prediction_id = p.id"
        ).fetchall()
    by_id = {r[0]: r for r in logged}
    assert set(sent) <= set(by_id), "every production row has its shadow output"
    agree = 0
    for ids, rows in requests:
        # The shadow scores each request's rows in one call, as the model does in-process.
        want_pred, want_proba = shadow.predict(rows).tolist(), shadow.predict_proba(rows).tolist()
        for i, pid in enumerate(ids):
            _, output, version, shadow_output = by_id[pid]
            shadow_answer = json.loads(shadow_output)
            assert version == "2"
            assert shadow_answer["prediction"] == want_pred[i]
            assert shadow_answer["probabilities"] == want_proba[i]
            agree += json.loads(output)["prediction"] == shadow_answer["prediction"]
    metrics_now = client.get("/metrics").text
    assert (
        total(
            metrics_now,
            "modelserve_agreement_total",
            {"model": NAME, "version": "2", "outcome": "agree"},
        )
        - total(
            before,
            "modelserve_agreement_total",
            {"model": NAME, "version": "2", "outcome": "agree"},
        )
        == agree
    )
    assert agree < len(sent), "the weak shadow must disagree somewhere for the test to bite"


@pytest.mark.slow  # the app starts its off-path scorer process
def test_feedback_judges_the_shadow_answer_too(
    shadowed: Registry, make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(prediction_log=tmp_path / "log.db")
    data, target = load_breast_cancer(return_X_y=True)
    shadow = shadowed.load(NAME, "2").estimator
    before = client.get("/metrics").text
    body = client.post("/predict", json={"instances": data[:40].tolist()}).json()
    agreement = total(before, "modelserve_agreement_total", {"model": NAME, "version": "2"})
    wait_total(
        lambda: client.get("/metrics").text,
        "modelserve_agreement_total",
        {"model": NAME, "version": "2"},
        agreement + 40,
    )
    client.app.state.services.prediction_log.flush(10)  # type: ignore[attr-defined]
    labels = [
        {"prediction_id": p, "label": int(t)}
        for p, t in zip(body["prediction_ids"], target[:40], strict=True)
    ]
    assert client.post("/feedback", json=labels).status_code == 200
    after = client.get("/metrics").text
    expected_correct = int((shadow.predict(data[:40]) == target[:40]).sum())

    def delta(outcome: str) -> float:
        labels_ = {"model": NAME, "version": "2", "outcome": outcome}
        return total(after, "modelserve_shadow_feedback_total", labels_) - total(
            before, "modelserve_shadow_feedback_total", labels_
        )

    assert delta("correct") == expected_correct
    assert delta("incorrect") == 40 - expected_correct
    # Production's own accuracy counters only count production's answers.
    assert total(after, "modelserve_feedback_total", {"model": NAME, "version": "2"}) == total(
        before, "modelserve_feedback_total", {"model": NAME, "version": "2"}
    )


@pytest.mark.slow  # the app starts its off-path scorer process
def test_labels_sent_before_or_after_the_shadow_scored_are_judged_exactly_once(
    shadowed: Registry, make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    """Feedback right after the answer (the shadow has not scored the rows yet: its scorer
    process is still starting) and feedback after it has: every label judged once against the
    shadow's answer, by whichever of the two writes came second."""
    client = make_client(prediction_log=tmp_path / "log.db")
    data, target = load_breast_cancer(return_X_y=True)
    shadow = shadowed.load(NAME, "2").estimator

    def scrape() -> str:
        return str(client.get("/metrics").text)

    before = scrape()

    def labels(rows: slice) -> list[dict[str, Any]]:
        body = client.post("/predict", json={"instances": data[rows].tolist()}).json()
        return [
            {"prediction_id": p, "label": int(t)}
            for p, t in zip(body["prediction_ids"], target[rows], strict=True)
        ]

    early, late = labels(slice(0, 30)), labels(slice(30, 70))
    assert client.post("/feedback", json=early).status_code == 200  # before the shadow scored
    version = {"model": NAME, "version": "2"}
    correct = {**version, "outcome": "correct"}

    def grown(name: str, labels_: dict[str, str], by: int) -> float:
        start = total(before, name, labels_)
        return wait_total(scrape, name, labels_, start + by) - start

    assert grown("modelserve_agreement_total", version, 70) == 70
    assert client.post("/feedback", json=late).status_code == 200  # after
    assert grown("modelserve_shadow_feedback_total", version, 70) == 70
    right = int((shadow.predict(data[:70]) == target[:70]).sum())
    assert (
        total(scrape(), "modelserve_shadow_feedback_total", correct)
        - total(before, "modelserve_shadow_feedback_total", correct)
        == right
    )
    assert right < 70, "the weak shadow must be wrong somewhere for the test to bite"


@pytest.mark.slow  # the app starts its off-path scorer process
def test_a_full_shadow_queue_drops_and_counts_without_slowing_answers(
    tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    root = tmp_path / "toy-models"
    registry = toy_registry(root, delay_s=0.0)
    X, y, names = iris()
    slow = SlowModel(0.05).fit(X, y)
    meta = registry.register(TOY, slow, fitted_fields(slow, "classification", names, X, y, X[0]))
    RoleAliases(registry).set_shadow(TOY, meta.version)
    settings = Settings(
        registry=root, default_model=TOY, poll_interval_s=0, shadow_queue_size=2,
        prediction_log=tmp_path / "l.db",
    )  # fmt: skip
    client = TestClient(build_app(settings))
    client.__enter__()
    deadline = time.monotonic() + 60  # the slow shadow's load probe takes seconds
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    before = total(client.get("/metrics").text, "modelserve_shadow_dropped_total", {"model": TOY})
    started = time.monotonic()
    for row in X[:60]:
        response = client.post("/predict", json={"instances": [row.tolist()]})
        assert response.status_code == 200
        assert response.json()["version"] == "1"
    elapsed = time.monotonic() - started
    dropped = total(client.get("/metrics").text, "modelserve_shadow_dropped_total", {"model": TOY})
    # 60 requests behind a 50 ms shadow with room for 2: most are dropped, and the answers did
    # not wait for the shadow (60 x 50 ms would be 3 s).
    assert dropped - before >= 30
    assert elapsed < 60 * 0.05
    client.__exit__(None, None, None)


def test_labels_of_any_type_compare_row_by_row() -> None:
    from app.serving.offpath import same_rows

    strings = np.array(["yes", "no", "yes"], dtype=object)
    assert same_rows(strings, np.array(["yes", "yes", "yes"], dtype=object)).tolist() == [
        True,
        False,
        True,
    ]
    mixed = np.array([1, "a", None], dtype=object)
    assert same_rows(mixed, np.array([1, "b", None], dtype=object)).tolist() == [True, False, True]
    multi = np.array([[1, 0], [1, 1]])  # multi-output: a row agrees when every output does
    assert same_rows(multi, np.array([[1, 0], [1, 0]])).tolist() == [True, False]


@pytest.mark.slow  # the app starts its off-path scorer process
def test_a_regressor_shadow_records_its_absolute_differences(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    from tests.test_metrics import REGRESSOR, register_regressor

    registry = register_regressor(tmp_path / "reg")
    data = load_diabetes()
    ridge = Ridge(alpha=5.0).fit(data.data, data.target)
    names = [str(n) for n in data.feature_names]
    fields = fitted_fields(ridge, "regression", names, data.data, data.target, data.data[0])
    version = registry.register(REGRESSOR, ridge, fields).version
    RoleAliases(registry).set_shadow(REGRESSOR, version)
    settings = Settings(
        registry=tmp_path / "reg", default_model=REGRESSOR, poll_interval_s=0,
        prediction_log=tmp_path / "r.db",
    )  # fmt: skip
    labels = {"model": REGRESSOR, "version": version}
    count, total_sum = (
        "modelserve_agreement_abs_difference_count",
        "modelserve_agreement_abs_difference_sum",
    )
    with ready_client(settings) as client:
        before = client.get("/metrics").text
        rows = data.data[:25]
        body = client.post("/predict", json={"instances": rows.tolist()}).json()
        wait_total(
            lambda: client.get("/metrics").text, count, labels, total(before, count, labels) + 25
        )
        after = client.get("/metrics").text
    assert total(after, count, labels) - total(before, count, labels) == 25
    want = float(np.abs(np.asarray(body["predictions"]) - ridge.predict(rows)).sum())
    got = total(after, total_sum, labels) - total(before, total_sum, labels)
    assert got == pytest.approx(want)


@pytest.mark.slow  # the app starts its off-path scorer process
def test_a_failing_shadow_is_counted_and_production_answers(tmp_path: Path) -> None:
    from tests.helpers.toy_models import PickyModel

    root = tmp_path / "toy-models"
    registry = toy_registry(root, delay_s=0.0)
    X, y, names = iris()
    picky = PickyModel(SlowModel(0.0).fit(X, y), limit=6.0).fit(X, y)
    small = X[X[:, 0] <= 6.0]
    fields = fitted_fields(picky, "classification", names, small, y[X[:, 0] <= 6.0], small[0])
    version = registry.register(TOY, picky, fields).version
    RoleAliases(registry).set_shadow(TOY, version)
    settings = Settings(
        registry=root, default_model=TOY, poll_interval_s=0, prediction_log=tmp_path / "t.db"
    )
    labels = {"model": TOY, "version": version}
    with ready_client(settings) as client:
        before = client.get("/metrics").text
        large = X[X[:, 0] > 6.0][:5]
        answered = client.post("/predict", json={"instances": large.tolist()})
        assert answered.status_code == 200, answered.text  # production is unaffected
        failures = "modelserve_shadow_failures_total"
        got = wait_total(
            lambda: client.get("/metrics").text,
            failures,
            labels,
            total(before, failures, labels) + 1,
        )
        assert got - total(before, failures, labels) == 1
        assert client.post("/predict", json={"instances": small[:3].tolist()}).status_code == 200
        agreement = "modelserve_agreement_total"
        agreed = wait_total(
            lambda: client.get("/metrics").text,
            agreement,
            labels,
            total(before, agreement, labels) + 3,
        )
        assert agreed - total(before, agreement, labels) == 3


@pytest.mark.slow  # the app starts its off-path scorer process
def test_a_mixed_type_string_label_model_shadows_and_logs_its_labels(tmp_path: Path) -> None:
    """A DataFrame pipeline with string labels and missing values, shadowed by a refit."""
    import joblib

    from tests.helpers.mixed import MIXED, TARGET, churn_frame, fit_churn, register_churn
    from tests.helpers.support import run_cli

    root = tmp_path / "models"
    register_churn(root, tmp_path)
    refit: Any = fit_churn(churn_frame(seed=7))
    joblib.dump(refit, tmp_path / "v2.joblib")
    sample = tmp_path / f"{MIXED}.csv"
    done = run_cli(
        "register", MIXED, str(tmp_path / "v2.joblib"), "--sample", str(sample),
        "--target", TARGET, "--registry", str(root),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    RoleAliases(Registry(root)).set_shadow(MIXED, "2")
    frame = churn_frame(n=40, seed=3).drop(columns=TARGET)
    records = json.loads(frame.to_json(orient="records"))  # NaN tenure -> null
    settings = Settings(
        registry=root, default_model=MIXED, poll_interval_s=0, prediction_log=tmp_path / "m.db"
    )
    labels = {"model": MIXED, "version": "2"}
    with ready_client(settings) as client:
        start = client.get("/metrics").text
        before = total(start, "modelserve_agreement_total", labels)
        body = client.post("/predict", json={"instances": records}).json()
        assert body["version"] == "1"
        production = Registry(root).load(MIXED, "1").estimator
        assert body["predictions"] == production.predict(frame).tolist()  # "yes" / "no"
        wait_total(
            lambda: client.get("/metrics").text,
            "modelserve_agreement_total",
            labels,
            before + len(records),
        )
        after = client.get("/metrics").text
        client.app.state.services.prediction_log.flush(10)  # type: ignore[attr-defined]
    with sqlite3.connect(tmp_path / "m.db") as db:
        shadow = dict(db.execute("SELECT prediction_id, output FROM shadow_predictions").fetchall())
    answers = [json.loads(shadow[pid])["prediction"] for pid in body["prediction_ids"]]
    assert answers == refit.predict(frame).tolist()
    agree = sum(a == p for a, p in zip(answers, body["predictions"], strict=True))
    agreed = {**labels, "outcome": "agree"}
    counted = total(after, "modelserve_agreement_total", agreed) - total(
        start, "modelserve_agreement_total", agreed
    )
    assert total(after, "modelserve_agreement_total", labels) - before == len(records)
    assert counted == agree  # the counters and the log hold the same answers
