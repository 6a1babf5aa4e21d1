"""Calibration at train and register time: error and bins in metadata, a map when over 0.05."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.naive_bayes import GaussianNB

from app.registry.store import Registry
from app.training.calibration import MAX_ECE, apply_map, calibrate, fit_map
from tests.helpers.lifecycle import NAME, breast_cancer_csv, train_quick
from tests.helpers.support import run_cli


@pytest.mark.parametrize(
    "estimator", ["sklearn.tree.DecisionTreeClassifier", "sklearn.naive_bayes.GaussianNB"]
)
def test_an_over_confident_model_gets_a_map_that_brings_held_out_ece_under_005(
    registry_path: Path, estimator: str
) -> None:
    out = train_quick(
        registry_path,
        **{"estimator.class": estimator, "estimator.params": {}, "gate.thresholds": {}},
    )
    assert out.status == "registered", out.report
    registry = Registry(registry_path)
    meta = registry.metadata(NAME, str(out.version))
    cal = meta.calibration
    assert cal is not None and cal.rows == meta.rows["test"]  # type: ignore[attr-defined]
    assert cal.ece > MAX_ECE, "the model is expected to be over-confident on held-out rows"
    assert sum(b.count for b in cal.bins) == cal.rows
    assert cal.map is not None and cal.ece_calibrated is not None
    assert cal.ece_calibrated <= MAX_ECE
    assert out.report["calibration"]["ece_calibrated"] == cal.ece_calibrated
    print(f"{estimator}: held-out ECE {cal.ece:.4f} -> {cal.ece_calibrated:.4f}")
    # The map lives in the metadata; the artifact is the plain fitted estimator.
    assert not hasattr(registry.load(NAME, str(out.version)).estimator, "calibrated_classifiers_")
    card = (registry_path / NAME / str(out.version) / "MODEL_CARD.md").read_text()
    assert "## Calibration" in card and "isotonic map" in card


def test_a_calibrated_model_keeps_its_probabilities(registry_path: Path) -> None:
    out = train_quick(registry_path)  # the default logistic regression
    cal = Registry(registry_path).metadata(NAME, str(out.version)).calibration
    assert cal is not None and cal.ece <= MAX_ECE and cal.map is None
    assert [b.lower for b in cal.bins] == sorted(b.lower for b in cal.bins)


def test_regressors_are_not_calibrated(registry_path: Path) -> None:
    out = train_quick(
        registry_path,
        name="diabetes",
        task="regression",
        **{
            "data.source": "sklearn:diabetes",
            "estimator.class": "sklearn.linear_model.Ridge",
            "estimator.params": {},
            "gate": {},
        },
    )
    assert out.status == "registered", out.report
    assert Registry(registry_path).metadata("diabetes", str(out.version)).calibration is None


def test_the_map_is_monotone_and_read_with_interp() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 2000)
    correct = (rng.uniform(size=2000) < confidence - 0.2).astype(np.float64)  # 0.2 too sure
    mapping = fit_map(confidence, correct)
    assert np.all(np.diff(mapping.y) >= 0)
    mapped = apply_map(mapping, np.array([0.4, 0.75, 1.2]))
    assert mapped[0] == mapping.y[0] and mapped[-1] == mapping.y[-1]  # clipped at the ends
    proba = np.column_stack([1 - confidence, confidence])
    result = calibrate(proba, correct.astype(int), np.array([0, 1]))
    assert result.ece_before == pytest.approx(0.2, abs=0.03)
    assert result.ece_after is not None and result.ece_after < 0.05


def test_register_with_a_sample_stores_calibration(registry_path: Path, tmp_path: Path) -> None:
    data = load_breast_cancer(as_frame=True)
    model = GaussianNB().fit(data.data.iloc[::2].to_numpy(), data.target.iloc[::2])
    joblib.dump(model, tmp_path / "nb.joblib")
    sample = breast_cancer_csv(tmp_path / "sample.csv", lambda f: f.iloc[1::2])
    result = run_cli(
        "register", "nb", str(tmp_path / "nb.joblib"), "--sample", str(sample),
        "--target", "target", "--registry", str(registry_path), "--gate", "accuracy>=0.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    cal = Registry(registry_path).metadata("nb", "1").calibration
    assert cal is not None and cal.rows == len(data.target) // 2 and cal.bins
    card = (registry_path / "nb" / "1" / "MODEL_CARD.md").read_text()
    assert "## Calibration" in card
