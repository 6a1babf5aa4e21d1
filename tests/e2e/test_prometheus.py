"""The project's rules and dashboard against a real Prometheus scraping a real modelserve.

Prometheus scrapes every second and evaluates every second; the rule files are the committed
ones, unmodified. Known traffic goes in (breast-cancer rows as they are, and the same rows shifted
by one training standard deviation to a second model), known feedback goes in (3 of 4 labels
agree with the prediction), and the recorded accuracy, PSI, alerts and every dashboard query are
read back through the HTTP API.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from app.registry.roles import RoleAliases
from app.registry.store import Registry
from tests.helpers.prometheus_proc import PrometheusServer
from tests.helpers.queries import load_dashboard, panels, substitute
from tests.helpers.support import Server

MODEL = "breast-cancer"
PROBE = "drift-probe"  # a second copy of the model that only ever sees shifted inputs
CHUNK = 100
WARMUP = (30, 10)  # (correct, incorrect) labels
MAIN = (210, 70)
KNOWN_ACCURACY = 0.75
# Panels allowed to be empty in a healthy run: they only show failures.
ONLY_ON_FAILURE = {"Overload rejections and reload failures", "Prediction-log write failures"}

pytestmark = pytest.mark.e2e


def add_probe_model(registry: Path) -> None:
    shutil.copytree(registry / MODEL, registry / PROBE)
    for meta_path in (registry / PROBE).glob("*/metadata.json"):
        meta = json.loads(meta_path.read_text())
        meta["name"] = PROBE
        meta_path.write_text(json.dumps(meta))


def add_shadow(registry: Path) -> None:
    """A copy of the model's version 1 as version 2, shadowing it (the agreement panels)."""
    shutil.copytree(registry / MODEL / "1", registry / MODEL / "2")
    meta_path = registry / MODEL / "2" / "metadata.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "version": "2"}))
    RoleAliases(Registry(registry)).set_shadow(MODEL, "2")


def predict(url: str, rows: np.ndarray[Any, Any]) -> tuple[list[str], list[int]]:
    ids: list[str] = []
    predictions: list[int] = []
    for start in range(0, len(rows), CHUNK):
        resp = httpx.post(url, json={"instances": rows[start : start + CHUNK].tolist()}, timeout=30)
        assert resp.status_code == 200, resp.text
        ids += resp.json()["prediction_ids"]
        predictions += resp.json()["predictions"]
    return ids, predictions


def send_feedback(url: str, pairs: list[tuple[str, int]], correct: int) -> None:
    """The first ``correct`` pairs get the predicted label, the rest the other class."""
    items = [
        {"prediction_id": pid, "label": pred if i < correct else 1 - pred}
        for i, (pid, pred) in enumerate(pairs)
    ]
    resp = httpx.post(f"{url}/feedback", json=items, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == len(items)


def scraped(
    prom: PrometheusServer, expr: str, key: str, want: Mapping[str, float]
) -> Callable[[], bool]:
    return lambda: prom.values(expr, key) == want


def counted(prom: PrometheusServer, model: str, features: int, rows: int) -> Callable[[], bool]:
    """True once the recorded 1 h value count of every feature includes all ``rows``."""
    expr = f'model_version_feature:modelserve_feature_values:increase1h{{model="{model}"}}'

    def probe() -> bool:
        per_feature = prom.values(expr, "feature")
        return len(per_feature) == features and min(per_feature.values()) >= rows - 0.5

    return probe


def test_rules_dashboard_and_alerts_against_real_prometheus(
    registry_path: Path, server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    add_probe_model(registry_path)
    add_shadow(registry_path)
    server = server_factory(
        registry_path,
        env={
            "MODELSERVE_POLL_INTERVAL_S": "0",
            "MODELSERVE_PREDICTION_LOG": str(tmp_path / "predictions.db"),
            # Every answer explained: the attribution panels have data whatever the draw.
            "MODELSERVE_ATTRIBUTION_SAMPLE_RATE": "1",
        },
    )
    server.wait_ready(timeout=120)
    (tmp_path / "prom").mkdir()
    with PrometheusServer(tmp_path / "prom", [f"127.0.0.1:{server.port}"]) as prom:
        # Start from scraped zeros: every bin counter exists at 0 before any traffic.
        prom.wait_for(
            lambda: (
                prom.values("count by (model) (modelserve_feature_bin_total)", "model").keys()
                >= {MODEL, PROBE}
            ),
            timeout=60,
            what="first scrape of the drift counters",
        )
        data = load_breast_cancer().data
        meta = json.loads((registry_path / MODEL / "1" / "metadata.json").read_text())
        std = np.array([meta["reference"]["features"][f["name"]]["std"] for f in meta["features"]])
        ids, predictions = predict(f"{server.url}/predict", data)
        predict(f"{server.url}/v1/models/{PROBE}:predict", data + std)
        bad = httpx.post(f"{server.url}/predict", json={"instances": [["x"]]}, timeout=30)
        assert bad.status_code == 422

        # Feedback in two steps with the same 3:1 mix, each waited for in Prometheus: whatever
        # the first scraped sample is, increase() extrapolates both outcomes alike.
        pairs = list(zip(ids, predictions, strict=True))
        per_outcome = f'sum by (outcome) (modelserve_feedback_total{{model="{MODEL}"}})'
        send_feedback(server.url, pairs[: sum(WARMUP)], WARMUP[0])
        want = {"correct": WARMUP[0], "incorrect": WARMUP[1]}
        prom.wait_for(scraped(prom, per_outcome, "outcome", want), what="warm-up feedback")
        send_feedback(server.url, pairs[sum(WARMUP) : sum(WARMUP) + sum(MAIN)], MAIN[0])
        want = {"correct": WARMUP[0] + MAIN[0], "incorrect": WARMUP[1] + MAIN[1]}
        prom.wait_for(scraped(prom, per_outcome, "outcome", want), what="feedback")

        labels_1h = f'model_version:modelserve_feedback:increase1h{{model="{MODEL}"}}'
        prom.wait_for(
            lambda: prom.values(labels_1h, "version").get("1", 0) >= sum(MAIN) - 0.5,
            what="feedback in the recorded 1 h increase",
        )
        accuracy = prom.values(
            f'model_version:modelserve_accuracy:ratio1h{{model="{MODEL}"}}', "version"
        )
        assert accuracy.keys() == {"1"}
        assert accuracy["1"] == pytest.approx(KNOWN_ACCURACY, abs=0.005)

        n_features = len(meta["features"])
        psi = "model_version_feature:modelserve_feature_psi:1h"
        for model in (MODEL, PROBE):
            prom.wait_for(
                counted(prom, model, n_features, len(data)),
                what=f"all {model} traffic in the recorded bin counts",
            )
        prom.wait_for(lambda: len(prom.query(psi)) == 2 * n_features, what="PSI of every feature")
        in_dist = prom.values(f'{psi}{{model="{MODEL}"}}', "feature")
        shifted = prom.values(f'{psi}{{model="{PROBE}"}}', "feature")
        assert len(in_dist) == len(shifted) == n_features
        assert max(in_dist.values()) < 0.1, in_dist
        assert min(shifted.values()) > 0.2, shifted
        class_mix = prom.values(
            f'model_version:modelserve_class_mix_psi:1h{{model="{MODEL}"}}', "version"
        )
        assert class_mix["1"] < 0.1

        # A rate needs an increase between two scrapes of a series: traffic that all falls
        # inside one scrape interval leaves every rate at 0 and the 5xx ratio (defined only
        # while there is traffic) absent. Spread a few requests over several scrapes.
        for _ in range(4):
            predict(f"{server.url}/predict", data[:1])
            time.sleep(1.2)
        prom.wait_for(
            lambda: prom.query("modelserve:http_requests_5xx:ratio_rate5m"), what="5xx ratio"
        )
        rows = itertools.cycle(range(len(data)))

        def agreement() -> list[dict[str, Any]]:
            # The shadow scores off the request path, in its own process; a full run on 4
            # workers once saw no agreement series within 30 s. Keep rows coming (in
            # distribution, so no drift is made) until it shows.
            i = next(rows)
            predict(f"{server.url}/predict", data[i : i + 1])
            return prom.query("model_version:modelserve_agreement:ratio_rate5m")

        prom.wait_for(agreement, timeout=120, what="the shadow's agreement")
        check_dashboard_queries(prom)

        drifting = prom.wait_for(
            lambda: prom.alerts("ModelserveFeatureDrift"), what="ModelserveFeatureDrift pending"
        )
        assert {a["labels"]["model"] for a in drifting} == {PROBE}
        firing = prom.wait_for(
            lambda: [
                a for a in prom.alerts("ModelserveAccuracyBelowThreshold") if a["state"] == "firing"
            ],
            timeout=150,
            what="ModelserveAccuracyBelowThreshold firing",
        )
        assert [(a["labels"]["model"], a["labels"]["version"]) for a in firing] == [(MODEL, "1")]
        assert firing[0]["labels"]["severity"] == "critical"
        assert float(firing[0]["value"]) == pytest.approx(KNOWN_ACCURACY, abs=0.005)


def check_dashboard_queries(prom: PrometheusServer) -> None:
    """Every target of every panel runs; every panel but the failure-only ones has data."""
    variables = {
        "datasource": "prometheus",
        "model": MODEL,
        "version": "1",
        "__rate_interval": "1m",
        "__interval": "1s",
    }
    empty: list[str] = []
    for panel in panels(load_dashboard()):
        results = [prom.query(substitute(t["expr"], variables)) for t in panel["targets"]]
        if not any(results):
            empty.append(panel["title"])
    assert set(empty) <= ONLY_ON_FAILURE, f"panels without data: {empty}"
