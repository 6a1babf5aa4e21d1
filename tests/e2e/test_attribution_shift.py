"""What drives each version, through the committed rules and dashboard: real server, real
simulator, real Prometheus.

Two copies of a churn model (a logistic regression over one-hot plans and countries and three
scaled numbers, registered with ``modelserve register`` from the same sample, which stores each
feature's training share of the contributions) get ``modelserve simulate`` traffic drawn from
that sample: one as it is, one with ``--shift plan=enterprise:0.6`` (60 % of rows forced to the
plan that the sample has at 5 % and that weighs most on the model's margin). Every answer is
explained (``MODELSERVE_ATTRIBUTION_SAMPLE_RATE=1``). The dashboard's *What drives each version*
query must show plan's share moving on the shifted copy only, and ModelserveAttributionShift
must become active for it alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.helpers.mixed import simulate
from tests.helpers.prometheus_proc import PrometheusServer
from tests.helpers.queries import load_dashboard, panels, substitute
from tests.helpers.support import Server, run_cli

MODEL, PROBE = "plans", "plans-probe"
TARGET = "churned"
PANEL = "What drives each version"
DISTANCE = "model_version:modelserve_attribution_distance:1h"
ROWS = "model_version:modelserve_attribution_rows:increase1h"
COUNTED = 'sum by (model) (modelserve_attribution_rows_total{{model="{model}"}})'
REFERENCE = "model_version_feature:modelserve_attribution_reference:share"
ALERT = "ModelserveAttributionShift"
RATE, SECONDS = 250, 4

pytestmark = pytest.mark.e2e


def plans_frame(n: int = 800, seed: int = 0) -> pd.DataFrame:
    """Churn by plan (enterprise rare, and the strongest), monthly fee and tenure."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "plan": rng.choice(["basic", "pro", "team", "enterprise"], n, p=[0.45, 0.3, 0.2, 0.05]),
            "country": rng.choice(["de", "fr", "us"], n),
            "seats": rng.integers(1, 50, n),
            "monthly_fee": rng.normal(30, 8, n).round(2),
            "tenure_months": rng.integers(0, 60, n).astype(float),
        }
    )
    plan = frame["plan"].map({"basic": 0.0, "pro": -0.4, "team": -0.8, "enterprise": -3.0})
    logit = plan + 0.15 * (frame["monthly_fee"] - 30) - 0.04 * (frame["tenure_months"] - 30)
    frame[TARGET] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return frame


def fit_plans(frame: pd.DataFrame) -> Pipeline:
    encode = ColumnTransformer(
        [
            ("strings", OneHotEncoder(handle_unknown="ignore"), ["plan", "country"]),
            ("numbers", StandardScaler(), ["seats", "monthly_fee", "tenure_months"]),
        ]
    )
    model = make_pipeline(encode, LogisticRegression(max_iter=1000))
    return model.fit(frame.drop(columns=TARGET), frame[TARGET])


def _register(registry: Path, workdir: Path, name: str, frame: pd.DataFrame) -> Path:
    artifact, sample = workdir / f"{name}.joblib", workdir / f"{name}.csv"
    joblib.dump(fit_plans(frame), artifact)
    frame.to_csv(sample, index=False)
    args = ["register", name, str(artifact), "--sample", str(sample), "--target", TARGET]
    # Churn is noisy (a logistic's own labels): the default gate's 0.85 accuracy is not the point.
    done = run_cli(*args, "--gate", "accuracy>=0.5", "--promote", "--registry", str(registry))
    assert done.returncode == 0, done.stdout + done.stderr
    return sample


def _counted(prom: PrometheusServer, model: str, rows: int) -> Callable[[], bool]:
    """Every answered row explained and scraped (the raw counter, summed over workers)."""
    return lambda: prom.values(COUNTED.format(model=model), "model").get(model, 0) >= rows - 0.5


def _panel_query(model: str) -> str:
    """The live-share target of the dashboard's panel, for one model."""
    (panel,) = [p for p in panels(load_dashboard()) if p["title"] == PANEL]
    live = next(t["expr"] for t in panel["targets"] if "attribution:share1h" in t["expr"])
    return substitute(live, {"model": model})


def test_a_shifted_feature_moves_its_attribution_share_and_fires_only_there(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    registry = tmp_path / "models"
    sample = _register(registry, tmp_path, MODEL, plans_frame())
    _register(registry, tmp_path, PROBE, plans_frame())
    server = server_factory(
        registry,
        env={
            "MODELSERVE_MODEL": MODEL,
            "MODELSERVE_POLL_INTERVAL_S": "0",
            "MODELSERVE_PREDICTION_LOG": str(tmp_path / "predictions.db"),
            "MODELSERVE_ATTRIBUTION_SAMPLE_RATE": "1",
        },
    )
    server.wait_ready(timeout=120)
    (tmp_path / "prom").mkdir()
    # The alert's own expression, its 15 m `for` cut to seconds: firing within the test.
    fast = {ALERT: "5s"}
    with PrometheusServer(tmp_path / "prom", [f"127.0.0.1:{server.port}"], fast) as prom:
        reference = prom.wait_for(
            lambda: (
                {m: prom.values(f'{REFERENCE}{{model="{m}"}}', "feature") for m in (MODEL, PROBE)}
                if len(prom.query(REFERENCE)) == 10
                else None
            ),
            timeout=60,
            what="the training shares of both copies, scraped",
        )
        shifted = ("--seed", "2", "--shift", "plan=enterprise:0.6")
        sent = {
            MODEL: simulate(server.url, MODEL, sample, RATE, SECONDS, "--seed", "1"),
            PROBE: simulate(server.url, PROBE, sample, RATE, SECONDS, *shifted),
        }
        assert min(sent.values()) >= 400, sent
        for model, rows in sent.items():
            prom.wait_for(_counted(prom, model, rows), what=f"every {model} answer counted")
        prom.wait_for(
            lambda: min(prom.values(ROWS, "model").values(), default=0) >= 200,
            what="the alert's 200 sampled rows, recorded",
        )
        prom.wait_for(lambda: len(prom.query(DISTANCE)) == 2, what="both distances")
        live = {m: prom.values(_panel_query(m), "feature") for m in (MODEL, PROBE)}
        distance = prom.values(DISTANCE, "model")
        alerts = prom.wait_for(
            lambda: [a for a in prom.alerts(ALERT) if a["state"] == "firing"],
            what=f"{ALERT} firing",
        )
        time.sleep(3)  # evaluations go on: the copy in distribution stays silent
        alerts = prom.alerts(ALERT)
    print(f"reference {reference}\nlive {live}\ndistance {distance}")
    assert live[MODEL].keys() == live[PROBE].keys() == reference[MODEL].keys()
    assert abs(live[MODEL]["plan"] - reference[MODEL]["plan"]) < 0.05, live
    assert live[PROBE]["plan"] > reference[PROBE]["plan"] + 0.2, live
    top = {name: max(shares, key=shares.__getitem__) for name, shares in live.items()}
    assert max(reference[MODEL], key=reference[MODEL].__getitem__) == "monthly_fee"
    assert top == {MODEL: "monthly_fee", PROBE: "plan"}  # the top feature changed
    assert distance[MODEL] < 0.1 < 0.2 < distance[PROBE], distance
    assert [(a["labels"]["model"], a["labels"]["version"]) for a in alerts] == [(PROBE, "1")]
    assert alerts[0]["labels"]["severity"] == "warning" and alerts[0]["state"] == "firing"
