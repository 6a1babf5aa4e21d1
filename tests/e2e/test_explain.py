""":explain served for real: every linear and tree family of the compatibility suite, the
default model and the mixed-type churn pipeline, from ONE ``modelserve serve`` process.

Each family is fitted with the compatibility suite's helpers and registered (in-process
``modelserve register``, which stores the background sample); the churn pipeline (one-hot
strings, a missing number, boosted trees) by the real command; the default model is the
committed one, from before backgrounds (its training means stand in). 16 concurrent clients
send every held-out row to ``/v1/models/{name}:explain`` in batches of 1 and of 50. Every
answer must add up to the model's own output in-process (to 1e-6) with one contribution per
original feature; a linear model's contributions must be ``coef * (T(x) - mean of
T(background))`` and a tree model's shap's own values, bit for bit, both computed here on the
request's rows. Families with no exact explainer, or whose explainer fails the sum check, get a
422 naming why, and :predict keeps answering them exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

import tests.e2e.test_compatibility as compat
from app.registry.metadata import ModelMetadata
from app.registry.store import Registry
from tests.helpers.clients import KeepAlive, run_jobs
from tests.helpers.explained import (
    linear_contributions,
    model_rows,
    own_output,
    records_of,
    register_fitted,
    shap_contributions,
    tree_explainer,
)
from tests.helpers.mixed import MIXED, TARGET, churn_frame, register_churn
from tests.helpers.support import Server, copy_registry

pytestmark = pytest.mark.e2e

CLIENTS = 16
BATCHES = (1, 50)
DEFAULT = "breast-cancer"
LINEAR = ["logistic-iris", "scaler-logistic", "linear-svc", "ridge-classifier", "string-labels",
          "int-labels-3-7-9", "column-transformer", "linear-regression", "ridge",
          "frame-regression", DEFAULT]  # fmt: skip
TREES = ["random-forest", "extra-trees", "hist-gb", "hist-gb-nan", "decision-tree",
         "bool-labels", "frame-numeric", "random-forest-reg", "hist-gb-reg",
         "gradient-boosting-reg", MIXED]  # fmt: skip
REFUSED = {
    "svc-no-proba": "SVC has no exact explainer",
    "knn": "KNeighborsClassifier has no exact explainer",
    "mlp": "MLPClassifier has no exact explainer",
    "adaboost": "AdaBoostClassifier has no exact explainer",
    "gradient-boosting": "shap cannot explain it",  # multiclass: shap has no way yet
    "hist-gb-category-dtype": "takes columns that are not numbers",
    "hist-gb-categorical": "its contributions do not add up",  # the sum check at build
}


@dataclass
class Served:
    name: str
    estimator: Any
    meta: ModelMetadata
    records: list[Any]
    answers: dict[int, list[Any]] = field(default_factory=dict)
    """Per batch size, each request's parsed answer (or the error), in row order."""
    explainer: Any = None
    """shap's own TreeExplainer, made here once (tree models)."""

    def rows(self, start: int, stop: int) -> Any:
        return model_rows(self.meta, self.records[start:stop])


@dataclass
class World:
    served: dict[str, Served]
    refusals: dict[str, tuple[int, dict[str, Any]]]
    predicted: dict[str, tuple[int, dict[str, Any]]]
    metrics: str
    log: str


def _records(case: compat.Case) -> list[Any]:
    return case.records(0, case.rows)


def _register_all(registry: Path, work: Path) -> dict[str, Served]:
    store = Registry(registry)
    served: dict[str, Served] = {}
    for family in compat.FAMILIES:
        if family.name not in LINEAR + TREES and family.name not in REFUSED:
            continue
        case = compat.fit(family)
        sample = compat.sample_frame(case)
        meta = register_fitted(store, work, family.name, case.estimator, sample, family.task)
        served[family.name] = Served(family.name, case.estimator, meta, _records(case))
    register_churn(registry, work)
    churn = store.load(MIXED, "1")
    records = records_of(churn_frame(120, seed=9).drop(columns=TARGET))
    served[MIXED] = Served(MIXED, churn.estimator, churn.metadata, records)
    default = store.load(DEFAULT, "1")
    rows = load_breast_cancer().data[::3].tolist()
    served[DEFAULT] = Served(DEFAULT, default.estimator, default.metadata, rows)
    return served


def _send(port: int, served: dict[str, Served]) -> None:
    """Every row of every explained model, in batches of 1 and 50, from 16 clients."""
    jobs = [
        (s, batch, start)
        for s in served.values()
        if s.name in LINEAR + TREES
        for batch in BATCHES
        for start in range(0, len(s.records), batch)
    ]
    for s in served.values():
        for batch in BATCHES:
            s.answers[batch] = [None] * len(range(0, len(s.records), batch))

    def work(connection: KeepAlive, job: tuple[Served, int, int]) -> Any:
        s, batch, start = job
        instances = s.records[start : start + batch]
        body = json.dumps({"instances": instances}).encode()
        status, text = connection.post(f"/v1/models/{s.name}:explain", body)
        return status, json.loads(text)

    for (s, batch, start), answer in zip(jobs, run_jobs(port, jobs, CLIENTS, work), strict=True):
        s.answers[batch][start // batch] = answer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("explain")
    registry = copy_registry(work / "models")
    served = _register_all(registry, work)
    env = {"MODELSERVE_POLL_INTERVAL_S": "0", "MODELSERVE_PREDICTION_LOG": str(work / "p.db")}
    with Server(registry, workdir=work, env=env) as server:
        server.wait_ready(timeout=120)
        _send(server.port, served)
        refusals: dict[str, Any] = {}
        predicted: dict[str, Any] = {}
        client = KeepAlive(server.port)
        for name in REFUSED:
            first = json.dumps({"instances": served[name].records[:1]}).encode()
            for answers, route in ((refusals, "explain"), (predicted, "predict")):
                status, text = client.post(f"/v1/models/{name}:{route}", first)
                answers[name] = (status, json.loads(text))
        metrics = httpx.get(server.url + "/metrics", timeout=10).text
        yield World(served, refusals, predicted, metrics, server.logs())


def _check(s: Served, batch: int, index: int, answer: Any) -> str | None:
    """Why one request's answer is wrong, or None."""
    start = index * batch
    stop = min(start + batch, len(s.records))
    if isinstance(answer, Exception) or answer is None:
        return f"rows {start}-{stop - 1}: {answer!r}"
    status, body = answer
    if status != 200:
        return f"rows {start}-{stop - 1}: HTTP {status}: {body}"
    features = s.meta.feature_names
    rows = body["explanations"]
    if body["features"] != features or len(rows) != stop - start:
        return f"rows {start}-{stop - 1}: {len(rows)} rows, features {body['features']}"
    if any(list(r["contributions"]) != features for r in rows):
        return f"rows {start}-{stop - 1}: contributions not one per original feature"
    X = s.rows(start, stop)
    got = np.asarray([[r["contributions"][f] for f in features] for r in rows])
    base = np.asarray([r["base_value"] for r in rows])
    wanted = own_output(s.estimator, body["output"], X)
    gap = np.abs(base + got.sum(axis=1) - wanted).max()
    if not gap <= 1e-6:
        return f"rows {start}-{stop - 1}: base + contributions are {gap} from the model's output"
    if s.name in LINEAR:
        background = model_rows(s.meta, s.meta.background) if s.meta.background else None
        if background is None:  # the committed default model: its training means
            means = [s.meta.reference.features[f].mean for f in features]
            background = np.asarray([means])
        expected = linear_contributions(s.estimator, X, background, len(features))
        if not np.allclose(got, expected, rtol=1e-12, atol=1e-12):
            return f"rows {start}-{stop - 1}: not coef * (T(x) - background mean)"
        return None
    s.explainer = s.explainer or tree_explainer(s.estimator)
    shap_base, expected = shap_contributions(s.estimator, X, len(features), s.explainer)
    if not (
        np.array_equal(got, expected) and np.array_equal(base, np.tile(shap_base, (len(X), 1)))
    ):
        return f"rows {start}-{stop - 1}: not shap's own values bit for bit"
    return None


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", LINEAR + TREES)
def test_every_answer_adds_up_per_original_feature(world: World, name: str, batch: int) -> None:
    s = world.served[name]
    problems = [p for i, a in enumerate(s.answers[batch]) if (p := _check(s, batch, i, a))]
    assert not problems, f"{name}, batches of {batch}: {len(problems)} bad: {problems[:3]}"
    first = s.answers[batch][0][1]
    linear = name in LINEAR
    assert first["method"] == ("linear" if linear else "tree_shap")
    if linear and s.meta.task == "classification":
        assert first["output"] == "margin"


@pytest.mark.parametrize("name", list(REFUSED))
def test_no_exact_explainer_or_a_failed_sum_check_is_a_clear_422(world: World, name: str) -> None:
    status, body = world.refusals[name]
    assert status == 422, body
    assert body["error"]["type"] == "not_explainable"
    assert body["error"]["message"].startswith(f"model {name!r} version 1 cannot be explained: ")
    assert REFUSED[name] in body["error"]["message"]
    status, answer = world.predicted[name]
    s = world.served[name]
    assert status == 200, answer
    assert answer["predictions"] == np.asarray(s.estimator.predict(s.rows(0, 1))).tolist()


def test_explanations_are_timed_and_counted_apart_from_predictions(world: World) -> None:
    lines = world.metrics.splitlines()
    for name in (DEFAULT, MIXED):
        assert any(
            line.startswith("modelserve_explain_duration_seconds_count")
            and f'model="{name}"' in line
            for line in lines
        ), name
    ok = [
        ln
        for ln in lines
        if ln.startswith("modelserve_explain_requests_total") and 'outcome="ok"' in ln
    ]
    assert sum(float(ln.rsplit(" ", 1)[1]) for ln in ok) == sum(
        len(s.answers[b])
        for s in world.served.values()
        if s.name in LINEAR + TREES
        for b in BATCHES
    )
    assert " ERROR " not in world.log and "Traceback" not in world.log
