"""Estimated accuracy against a real Prometheus: shifted inputs, labels that arrive late.

A Gaussian naive Bayes model is trained with ``modelserve train`` on synthetic rows. ``modelserve
simulate`` then sends rows of a shifted population (feature f3 concentrated in a band around 0,
where the classes overlap more) and returns their true labels 90 s later. Before any label
arrives, the recorded estimate (mean calibrated confidence) must have dropped far enough below
the held-out accuracy for ModelserveEstimatedAccuracyDrop to fire, while the label-based alert
has nothing to judge; once every label is in, the realised accuracy of the same
predictions must be within 0.05 of every estimate taken after the 500th prediction.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification

from tests.helpers.prometheus_proc import PrometheusServer
from tests.helpers.support import MODELSERVE, Server, run_cli

pytestmark = pytest.mark.e2e
NAME = "synth"
SEL = f'{{model="{NAME}", version="1"}}'
# 1200 predictions, the 500 the alert needs within the first 7 s; the alert's `for: 1m` then
# fires it about 70 s after the first prediction, well before the first label at DELAY.
RATE, DURATION, DELAY = 80, 15, 90
MAX_GAP = 0.05
ESTIMATE = f"model_version:modelserve_estimated_accuracy:ratio1h{SEL}"


def write_data(root: Path) -> tuple[Path, Path]:
    X, y = make_classification(
        n_samples=26000, n_features=6, n_informative=4, n_redundant=0, flip_y=0.03,
        class_sep=1.0, random_state=7,
    )  # fmt: skip
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]).assign(target=y)
    train, pool = frame.iloc[:6000], frame.iloc[6000:]
    shifted = pool[np.abs(pool["f3"]) < 0.5]
    train.to_csv(root / "train.csv", index=False)
    shifted.to_csv(root / "shifted.csv", index=False)
    spec = {
        "name": NAME,
        "data": {"source": "train.csv", "target": "target"},
        "split": {"test_size": 0.3},
        "estimator": {"class": "sklearn.naive_bayes.GaussianNB"},
        "gate": {"thresholds": {"accuracy": 0.8}},
    }
    (root / "train.yaml").write_text(yaml.safe_dump(spec))
    return root / "train.yaml", root / "shifted.csv"


def test_estimate_tracks_realised_accuracy_and_alerts_before_labels(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    spec, shifted = write_data(tmp_path)
    registry = tmp_path / "registry"
    trained = run_cli("train", str(spec), "--registry", str(registry), "--promote-if-better")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    server = server_factory(
        registry,
        env={
            "MODELSERVE_POLL_INTERVAL_S": "0",
            "MODELSERVE_PREDICTION_LOG": str(tmp_path / "predictions.db"),
        },
    )
    server.wait_ready(timeout=120)
    (tmp_path / "prom").mkdir()
    with PrometheusServer(tmp_path / "prom", [f"127.0.0.1:{server.port}"]) as prom:
        count = f"sum(modelserve_prediction_confidence_count{SEL})"
        prom.wait_for(lambda: prom.query(count), timeout=60, what="first scrape at zero")
        heldout = prom.wait_for(
            lambda: prom.values(f"model_version:modelserve_heldout_accuracy:ratio{SEL}", "model"),
            what="held-out accuracy",
        )[NAME]
        sim = subprocess.Popen(
            [
                MODELSERVE, "simulate", "--url", server.url, "--model", NAME,
                "--data", str(shifted), "--target", "target", "--rate", str(RATE),
                "--duration", str(DURATION), "--feedback-delay", str(DELAY), "--seed", "3",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            predictions = f"model_version:modelserve_prediction_confidence:increase1h{SEL}"
            prom.wait_for(
                lambda: prom.values(predictions, "model").get(NAME, 0) >= 500,
                timeout=90,
                what="500 predictions",
            )
            estimates: list[float] = []
            labels = f"sum(modelserve_feedback_total{SEL})"

            def fired() -> bool:
                estimates.extend(prom.values(ESTIMATE, "model").values())
                return any(
                    a["state"] == "firing" for a in prom.alerts("ModelserveEstimatedAccuracyDrop")
                )

            prom.wait_for(fired, timeout=DELAY, what="ModelserveEstimatedAccuracyDrop firing")
            seen = prom.query(labels)
            assert not seen or float(seen[0]["value"][1]) < 200, "labels came early"
            assert not prom.alerts("ModelserveAccuracyBelowThreshold")
            out, _ = sim.communicate(timeout=DURATION + DELAY + 120)
        finally:
            if sim.poll() is None:
                sim.kill()
        assert sim.returncode == 0, out

        def all_labelled() -> bool:
            got, made = prom.query(labels), prom.query(count)
            return bool(got) and float(got[0]["value"][1]) == float(made[0]["value"][1])

        prom.wait_for(all_labelled, timeout=60, what="every prediction labelled")
        estimates += prom.values(ESTIMATE, "model").values()
        correct = prom.query(f'sum(modelserve_feedback_total{{model="{NAME}", outcome="correct"}})')
        total = float(prom.query(labels)[0]["value"][1])
        realised = float(correct[0]["value"][1]) / total
        gap = max(abs(e - realised) for e in estimates)
        print(
            f"held-out {heldout:.4f}; {int(total)} predictions; realised {realised:.4f}; "
            f"estimates {min(estimates):.4f}..{max(estimates):.4f}; largest gap {gap:.4f}"
        )
        assert realised < heldout - 0.05  # the shift really costs accuracy
        assert gap <= MAX_GAP
