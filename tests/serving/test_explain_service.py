"""app.serving.explain.service.Explainers: built once per version in its own thread, refusals
kept, a timeout and a bound on waiting requests, counted in its own metrics."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY
from sklearn.datasets import load_wine
from sklearn.svm import SVC

from app.config import Settings
from app.errors import ErrorReason, RequestError
from app.registry.store import Registry
from app.serving.explain import build as builder
from app.serving.explain import service
from app.serving.explain.result import Explanation
from app.serving.runner import ServedModel
from tests.helpers.explained import register_fitted


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as pool:
        yield pool


def _served(registry_path: Path, executor: ThreadPoolExecutor, name: str) -> ServedModel:
    settings = Settings(registry=registry_path)
    return ServedModel.load(Registry(registry_path), name, "1", settings, executor)


def _rows(served: ServedModel) -> Any:
    return served.contract.records([list(served.metadata.example)] * 3, "instances")


def _run(explainers: service.Explainers, served: ServedModel, rows: Any) -> Explanation:
    return asyncio.run(explainers.explain(served, rows))


def _count(served: ServedModel, outcome: str) -> float:
    labels = {"model": served.name, "version": served.version, "outcome": outcome}
    return REGISTRY.get_sample_value("modelserve_explain_requests_total", labels) or 0.0


@dataclass
class Builds:
    """Every explainer build, by model name; each waits for ``hold`` when it is set."""

    names: list[str] = field(default_factory=list)
    hold: threading.Event | None = None


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Builds:
    seen = Builds()
    real = builder.build

    def counting(estimator: Any, meta: Any, contract: Any) -> Any:
        seen.names.append(meta.name)
        if seen.hold is not None:
            seen.hold.wait(10)
        return real(estimator, meta, contract)

    monkeypatch.setattr(builder, "build", counting)
    return seen


def test_an_explainer_is_built_once_per_version_and_counted(
    registry_path: Path, executor: ThreadPoolExecutor, builds: Builds
) -> None:
    served = _served(registry_path, executor, "breast-cancer")
    explainers = service.Explainers(Settings(registry=registry_path))
    before = _count(served, "ok")
    answers = [_run(explainers, served, _rows(served)) for _ in range(3)]
    assert builds.names == ["breast-cancer"]
    assert all(len(a) == 3 and a.output == "margin" for a in answers)
    assert _count(served, "ok") == before + 3
    labels = {"model": served.name, "version": served.version}
    assert (
        REGISTRY.get_sample_value("modelserve_explain_duration_seconds_count", labels) or 0
    ) >= 3
    explainers.close()


def test_a_refused_version_is_refused_at_once_every_time(
    registry_path: Path, tmp_path: Path, executor: ThreadPoolExecutor, builds: Builds
) -> None:
    X, y = load_wine(return_X_y=True)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(y=y)
    registry = Registry(registry_path)
    register_fitted(registry, tmp_path, "wine-svc", SVC().fit(X, y), frame, "classification")
    served = _served(registry_path, executor, "wine-svc")
    explainers = service.Explainers(Settings(registry=registry_path))
    for _ in range(2):
        with pytest.raises(RequestError) as refused:
            _run(explainers, served, _rows(served))
        assert refused.value.reason == ErrorReason.NOT_EXPLAINABLE
        assert "model 'wine-svc' version 1 cannot be explained: SVC has no exact" in str(
            refused.value
        )
    assert builds.names == ["wine-svc"]
    assert _count(served, "not_explainable") >= 2
    explainers.close()


def test_a_slow_build_times_out_the_request_and_serves_the_next(
    registry_path: Path, executor: ThreadPoolExecutor, builds: Builds
) -> None:
    served = _served(registry_path, executor, "breast-cancer")
    gate = builds.hold = threading.Event()
    explainers = service.Explainers(Settings(registry=registry_path, explain_timeout_s=0.2))
    with pytest.raises(RequestError) as late:
        _run(explainers, served, _rows(served))
    assert late.value.reason == ErrorReason.TIMEOUT and "MODELSERVE_EXPLAIN_TIMEOUT_S" in str(
        late.value
    )
    gate.set()  # the build goes on without the request and is kept
    deadline = time.monotonic() + 10
    while not explainers.explainer(served).done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_run(explainers, served, _rows(served))) == 3
    assert builds.names == ["breast-cancer"]
    explainers.close()


def test_requests_beyond_the_queue_are_refused_with_503(
    registry_path: Path, executor: ThreadPoolExecutor, builds: Builds
) -> None:
    served = _served(registry_path, executor, "breast-cancer")
    gate = builds.hold = threading.Event()
    explainers = service.Explainers(Settings(registry=registry_path, explain_queue_size=2))

    async def three() -> list[Any]:
        tasks = [asyncio.create_task(explainers.explain(served, _rows(served))) for _ in range(3)]
        await asyncio.sleep(0.1)
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(three())
    refused = [o for o in outcomes if isinstance(o, RequestError)]
    assert [o.reason for o in refused] == [ErrorReason.OVERLOADED]
    assert sum(isinstance(o, Explanation) for o in outcomes) == 2
    explainers.close()


def test_explanations_run_in_their_own_thread_not_the_inference_thread(
    registry_path: Path, executor: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = _served(registry_path, executor, "breast-cancer")
    threads: list[str] = []
    real = served.estimator.decision_function

    def watched(X: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(X)

    monkeypatch.setattr(served.estimator, "decision_function", watched)
    explainers = service.Explainers(Settings(registry=registry_path))
    _run(explainers, served, _rows(served))
    assert threads and all(name.startswith("explain") for name in threads), threads
    assert np.isfinite(_run(explainers, served, _rows(served)).contributions).all()
    explainers.close()
