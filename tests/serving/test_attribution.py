"""app.serving.attribution: a sampled share of answered rows explained off the request path into
modelserve_attribution_abs_sum_total / _rows_total, and the training reference published at load.

Metrics are process-global (other tests count too): every count is asserted as a delta.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.svm import SVC

from app.cli.common import open_registry
from app.config import Settings
from app.registry.metadata import ModelMetadata
from app.registry.store import Registry
from app.serving import attribution
from app.serving.attribution import Attribution
from app.serving.attribution_counts import publish_reference
from app.serving.explain import build as builder
from app.serving.explain.model import ModelExplainer
from app.serving.explain.service import Explainers
from app.serving.runner import ServedModel
from tests.helpers.explained import (
    Matrix,
    linear_contributions,
    records_of,
    register_fitted,
    shap_contributions,
)
from tests.helpers.mixed import TARGET, churn_frame, fit_churn

MODEL = "breast-cancer"
DATA = load_breast_cancer().data


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as pool:
        yield pool


@pytest.fixture
def explainers(registry_path: Path) -> Iterator[Explainers]:
    made = Explainers(Settings(registry=registry_path))
    yield made
    made.close()


def _served(root: Path, executor: ThreadPoolExecutor, name: str, version: str = "1") -> Any:
    return ServedModel.load(Registry(root), name, version, Settings(registry=root), executor)


def _value(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


def _sums(served: ServedModel) -> Matrix:
    meta = served.metadata
    labels = {"model": meta.name, "version": meta.version}
    metric = "modelserve_attribution_abs_sum_total"
    return np.asarray([_value(metric, **labels, feature=f) for f in meta.feature_names])


def _rows(served: ServedModel) -> float:
    labels = {"model": served.name, "version": served.version}
    return _value("modelserve_attribution_rows_total", **labels)


def _by_hand(served: ServedModel, X: Matrix) -> Matrix:
    """Per feature, |coef * (T(x) - T(training means))| summed over the rows (the default model
    stores no background: its training means are the background)."""
    meta = served.metadata
    means = np.asarray([[meta.reference.features[f].mean for f in meta.feature_names]])
    values = linear_contributions(served.estimator, X, means, len(meta.features))
    sums: Matrix = np.abs(values).sum(axis=(0, 2))
    return sums


def _requests(X: Matrix, sizes: list[int]) -> Iterator[Matrix]:
    start = 0
    while start < len(X):
        for size in sizes:
            yield X[start : start + size]
            start += size


def test_at_rate_one_every_answered_row_is_explained_and_counted(
    registry_path: Path, executor: ThreadPoolExecutor, explainers: Explainers
) -> None:
    served = _served(registry_path, executor, MODEL)
    sampler = Attribution(1.0, explainers, flush_s=3600, cpu_share=1.0)
    before, rows_before = _sums(served), _rows(served)
    for rows in _requests(DATA, [1, 3, 70, 7]):  # a request past one call's 64 rows too
        sampler.offer(rows, served)
    sampler.flush()
    assert _rows(served) - rows_before == len(DATA)
    assert np.allclose(_sums(served) - before, _by_hand(served, DATA), rtol=1e-9)


def test_each_row_is_sampled_at_the_rate_whatever_the_request_sizes(
    registry_path: Path, executor: ThreadPoolExecutor, explainers: Explainers
) -> None:
    served = _served(registry_path, executor, MODEL)
    sampler = Attribution(0.05, explainers, flush_s=3600, cpu_share=1.0, seed=7)
    X = np.vstack([DATA] * 40)  # 22,760 rows
    rows_before = _rows(served)
    for rows in _requests(X, [1, 1, 5, 50, 2]):
        sampler.offer(rows, served)
    sampler.flush()
    sampled = _rows(served) - rows_before
    expected, sd = 0.05 * len(X), np.sqrt(len(X) * 0.05 * 0.95)
    assert abs(sampled - expected) < 4 * sd, (sampled, expected)


def test_typed_rows_and_a_shadow_count_the_same_rows_per_version(
    tmp_path: Path, executor: ThreadPoolExecutor, explainers: Explainers
) -> None:
    registry = open_registry(tmp_path / "models")
    frame = churn_frame()
    sample = frame.rename(columns={TARGET: "y"})
    register_fitted(registry, tmp_path, "churn", fit_churn(frame), sample, "classification")
    shutil.copytree(tmp_path / "models" / "churn" / "1", tmp_path / "models" / "churn" / "2")
    meta_path = tmp_path / "models" / "churn" / "2" / "metadata.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "version": "2"}))
    production = _served(tmp_path / "models", executor, "churn")
    shadow = _served(tmp_path / "models", executor, "churn", "2")
    sampler = Attribution(1.0, explainers, flush_s=3600, cpu_share=1.0)
    records = records_of(frame.drop(columns=TARGET).iloc[:120])
    before = {v.version: (_sums(v), _rows(v)) for v in (production, shadow)}
    for start in range(0, 120, 40):
        rows = production.contract.records(records[start : start + 40])
        sampler.offer(rows, production, shadow)
    sampler.flush()

    X = frame.drop(columns=TARGET).iloc[:120].reset_index(drop=True)
    _, values = shap_contributions(production.estimator, X, len(production.metadata.features))
    expected = np.abs(values).sum(axis=(0, 2))
    for version in (production, shadow):
        sums, rows_before = before[version.version]
        assert _rows(version) - rows_before == 120
        assert np.allclose(_sums(version) - sums, expected, rtol=1e-9)


def test_the_sampled_rows_of_a_typed_request_are_its_own_rows(
    tmp_path: Path, executor: ThreadPoolExecutor, explainers: Explainers
) -> None:
    registry = Registry(tmp_path / "models")
    frame = churn_frame()
    model = fit_churn(frame)
    sample = frame.rename(columns={TARGET: "y"})
    register_fitted(registry, tmp_path, "churn", model, sample, "classification")
    served = _served(tmp_path / "models", executor, "churn")
    sampler = Attribution(0.3, explainers, flush_s=3600, cpu_share=1.0, seed=3)
    X = frame.drop(columns=TARGET).iloc[[7]].reset_index(drop=True)
    before, rows_before = _sums(served), _rows(served)
    for _ in range(100):  # ten copies of one row a request: some of each are sampled
        sampler.offer(served.contract.records(records_of(X) * 10), served)
    sampler.flush()
    sampled = _rows(served) - rows_before
    assert 300 - 4 * np.sqrt(210) < sampled < 300 + 4 * np.sqrt(210)
    _, values = shap_contributions(model, X, len(served.metadata.features))
    assert np.allclose(_sums(served) - before, sampled * np.abs(values).sum(axis=(0, 2)))


def test_a_full_queue_drops_and_counts_rows_instead_of_waiting(
    registry_path: Path, executor: ThreadPoolExecutor, explainers: Explainers
) -> None:
    served = _served(registry_path, executor, MODEL)
    sampler = Attribution(1.0, explainers, queue_rows=10, flush_s=3600, cpu_share=1.0)
    dropped = _value("modelserve_attribution_dropped_rows_total", model=MODEL, reason="queue_full")
    rows_before = _rows(served)
    for i in range(25):
        sampler.offer(DATA[i : i + 1], served)
    after = _value("modelserve_attribution_dropped_rows_total", model=MODEL, reason="queue_full")
    assert after - dropped == 15
    sampler.flush()
    assert _rows(served) - rows_before == 10


def test_the_request_path_never_waits_for_an_explainer(
    registry_path: Path,
    executor: ThreadPoolExecutor,
    explainers: Explainers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = _served(registry_path, executor, MODEL)
    gate = threading.Event()
    real = builder.build

    def held(*args: Any) -> Any:
        gate.wait(30)
        return real(*args)

    monkeypatch.setattr(builder, "build", held)
    sampler = Attribution(1.0, explainers, flush_s=0.05)
    rows_before = _rows(served)
    for i in range(5):  # returns while the explainer is still being built
        sampler.offer(DATA[i : i + 1], served)
    assert not explainers.explainer(served).done()
    assert _rows(served) == rows_before
    gate.set()
    deadline = time.monotonic() + 30
    while _rows(served) - rows_before < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rows(served) - rows_before == 5  # counted by the sampler's own thread
    sampler.close()


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _calls(
    monkeypatch: pytest.MonkeyPatch, per_call_s: float = 0.0, per_row_s: float = 0.0
) -> list[tuple[int, float]]:
    """The rows and CPU seconds of each explain call from now on, each made to cost that much
    more CPU."""
    calls: list[tuple[int, float]] = []
    real = ModelExplainer.explain

    def explain(self: ModelExplainer, X: Any, answered: Any = None) -> Any:
        start = time.thread_time()
        _burn(per_call_s + per_row_s * len(X))
        explained = real(self, X, answered)
        calls.append((len(X), time.thread_time() - start))
        return explained

    monkeypatch.setattr(ModelExplainer, "explain", explain)
    return calls


def test_a_call_takes_the_rows_that_fit_in_its_cpu_time(
    registry_path: Path,
    executor: ThreadPoolExecutor,
    explainers: Explainers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The event loop waits for the GIL while a call runs: a call is kept short (a forest's
    TreeSHAP, half a millisecond a row, would hold it 30 ms for 64 rows)."""
    served = _served(registry_path, executor, MODEL)
    sampler = Attribution(1.0, explainers, flush_s=3600, cpu_share=1.0)
    explainers.explainer(served).result()  # built (and checked) before the calls are watched
    calls = _calls(monkeypatch, per_row_s=0.0005)
    rows_before = _rows(served)
    sampler.offer(DATA[:200], served)
    sampler.flush()
    sizes = [size for size, _ in calls]
    assert _rows(served) - rows_before == 200 == sum(sizes)
    assert sizes[0] == 1 and 1 < max(sizes) < attribution.CHUNK_ROWS, sizes
    aim = max(attribution.CALL_S, 2 * calls[0][1])  # what a call aims at, from the first's CPU
    assert max(cpu for _, cpu in calls) <= 2 * aim, calls  # rows/s moves a little call to call


def test_a_call_whose_cost_is_fixed_takes_more_rows_not_fewer(
    registry_path: Path,
    executor: ThreadPoolExecutor,
    explainers: Explainers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pipeline's transforms cost the same for 1 row and 60: one row a call would not make
    the calls shorter, only more of them."""
    served = _served(registry_path, executor, MODEL)
    sampler = Attribution(1.0, explainers, flush_s=3600, cpu_share=1.0)
    explainers.explainer(served).result()
    calls = _calls(monkeypatch, per_call_s=4 * attribution.CALL_S)
    sampler.offer(DATA[:300], served)
    sampler.flush()
    sizes = [size for size, _ in calls]
    assert sizes[0] == 1 and max(sizes) == attribution.CHUNK_ROWS, sizes


def test_the_thread_takes_at_most_its_share_of_a_core(
    registry_path: Path, executor: ThreadPoolExecutor, explainers: Explainers
) -> None:
    served = _served(registry_path, executor, MODEL)
    sampler = Attribution(1.0, explainers, flush_s=3600, cpu_share=0.2)
    explainers.explainer(served).result()
    rows_before = _rows(served)
    sampler.offer(DATA, served)
    cpu, wall = time.thread_time(), time.perf_counter()
    sampler.flush()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    assert _rows(served) - rows_before == len(DATA)
    assert cpu / wall <= 0.2 * 1.1, f"{cpu:.3f} s of CPU in {wall:.3f} s"


def test_a_version_without_an_explainer_counts_nothing_and_is_logged_once(
    registry_path: Path,
    tmp_path: Path,
    executor: ThreadPoolExecutor,
    explainers: Explainers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    X, y = load_wine(return_X_y=True)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(y=y)
    registry = Registry(registry_path)
    register_fitted(registry, tmp_path, "wine-svc", SVC().fit(X, y), frame, "classification")
    served = _served(registry_path, executor, "wine-svc")
    sampler = Attribution(1.0, explainers, flush_s=3600, cpu_share=1.0)
    with caplog.at_level(logging.INFO, logger="app.serving.attribution"):
        for _ in range(3):
            sampler.offer(X[:4], served)
            sampler.flush()
    assert _rows(served) == 0 and not _sums(served).any()
    lines = [r.getMessage() for r in caplog.records if "no attribution counted" in r.getMessage()]
    assert len(lines) == 1 and "SVC has no exact explainer" in lines[0], lines


def test_the_training_reference_is_published_at_load(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    registry = open_registry(tmp_path / "models")
    frame = churn_frame()
    sample = frame.rename(columns={TARGET: "y"})
    meta = register_fitted(registry, tmp_path, "churn", fit_churn(frame), sample, "classification")
    assert meta.attribution_reference
    _served(tmp_path / "models", executor, "churn").activate()
    published = {
        f: _value("modelserve_attribution_reference_share", model="churn", version="1", feature=f)
        for f in meta.feature_names
    }
    assert published == pytest.approx(meta.attribution_reference, abs=1e-12)


def test_a_reference_over_more_than_100_features_is_shared_over_the_first_100() -> None:
    names = [f"f{j}" for j in range(120)]
    meta = ModelMetadata.model_validate(
        {
            "name": "wide", "version": "3", "created_at": "2026-01-01T00:00:00Z", "sha256": "0",
            "python_version": "3.11", "sklearn_version": "1.6", "task": "regression",
            "features": [{"name": n} for n in names], "data_fingerprint": "0",
            "attribution_reference": {n: 1 / 120 for n in names},
        }
    )  # fmt: skip
    publish_reference(meta)
    shares = [
        _value("modelserve_attribution_reference_share", model="wide", version="3", feature=n)
        for n in names
    ]
    assert shares[:100] == pytest.approx([0.01] * 100)
    assert shares[100:] == [0.0] * 20  # never exported
