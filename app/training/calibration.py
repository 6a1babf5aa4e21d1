"""Calibration of a classifier's top-class probability on held-out rows.

The confidence of a prediction is its largest class probability. Expected calibration error
(ECE) is the share-weighted gap between mean confidence and accuracy over ten equal-width
confidence bins. Above ``MAX_ECE`` a monotone map from confidence to the probability of being
right is fitted with scikit-learn's isotonic regression and kept in the metadata (the artifact
is stored unchanged); the server applies it with ``np.interp`` on the stored thresholds, so the
mean calibrated confidence of live traffic estimates its accuracy before any label arrives.

The error after calibration is cross-fitted (five folds of the held-out rows, each judged by the
map of the other four), since a map judged on the rows it was fitted on always looks right.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field
from sklearn.isotonic import IsotonicRegression

from app.registry.metadata import Calibration, CalibrationMap, ReliabilityBin

MAX_ECE = 0.05
BINS = 10

Floats = npt.NDArray[np.float64]


class CalibrationResult(BaseModel):
    """What ``calibrate`` found; ``.metadata`` is what the version stores."""

    metadata: Calibration
    ece_before: float
    ece_after: float | None = Field(None, description="None when no map was needed.")


def confidence_and_correct(
    proba: Floats, y: npt.NDArray[Any], classes: npt.NDArray[Any]
) -> tuple[Floats, Floats]:
    top = np.argmax(proba, axis=1)
    confidence = proba[np.arange(len(proba)), top].astype(np.float64)
    correct = (np.asarray(classes)[top] == np.asarray(y)).astype(np.float64)
    return confidence, correct


def reliability(confidence: Floats, correct: Floats) -> list[ReliabilityBin]:
    """Ten equal-width bins of (0, 1]; empty bins are left out."""
    index = np.clip(np.ceil(confidence * BINS).astype(int) - 1, 0, BINS - 1)
    out = []
    for i in range(BINS):
        mask = index == i
        if mask.any():
            out.append(
                ReliabilityBin(
                    lower=i / BINS,
                    upper=(i + 1) / BINS,
                    count=int(mask.sum()),
                    confidence=float(confidence[mask].mean()),
                    accuracy=float(correct[mask].mean()),
                )
            )
    return out


def ece(bins: list[ReliabilityBin]) -> float:
    total = sum(b.count for b in bins)
    if total == 0:
        return 0.0
    return float(sum(b.count * abs(b.confidence - b.accuracy) for b in bins) / total)


def fit_map(confidence: Floats, correct: Floats) -> CalibrationMap:
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(confidence, correct)
    return CalibrationMap(
        x=[float(v) for v in iso.X_thresholds_], y=[float(v) for v in iso.y_thresholds_]
    )


def apply_map(mapping: CalibrationMap | None, confidence: Floats) -> Floats:
    if mapping is None:
        return confidence
    return np.interp(confidence, mapping.x, mapping.y)


def _cross_fitted(confidence: Floats, correct: Floats, seed: int, folds: int = 5) -> Floats:
    """Each row's confidence through the map fitted on the other folds."""
    parts = np.array_split(np.random.default_rng(seed).permutation(len(confidence)), folds)
    out = np.empty_like(confidence)
    for judge_on in parts:
        fit_on = np.setdiff1d(np.arange(len(confidence)), judge_on)
        mapping = fit_map(confidence[fit_on], correct[fit_on])
        out[judge_on] = apply_map(mapping, confidence[judge_on])
    return out


def calibrate(
    proba: Floats, y: npt.NDArray[Any], classes: npt.NDArray[Any], seed: int = 0
) -> CalibrationResult:
    """Reliability and ECE of ``proba`` on held-out ``y``; a map when the ECE is too high."""
    confidence, correct = confidence_and_correct(proba, y, classes)
    before_bins = reliability(confidence, correct)
    before = ece(before_bins)
    if before <= MAX_ECE or len(confidence) < 10:
        meta = Calibration(rows=len(confidence), ece=before, bins=before_bins)
        return CalibrationResult(metadata=meta, ece_before=before)
    mapping = fit_map(confidence, correct)
    after_bins = reliability(_cross_fitted(confidence, correct, seed), correct)
    after = ece(after_bins)
    meta = Calibration(
        rows=len(confidence),
        ece=before,
        bins=before_bins,
        map=mapping,
        ece_calibrated=after,
        bins_calibrated=after_bins,
    )
    return CalibrationResult(metadata=meta, ece_before=before, ece_after=after)


def calibration_fields(
    estimator: Any, X: Any, y: npt.NDArray[Any], seed: int = 0
) -> dict[str, Any]:
    """``{"calibration": ...}`` for a classifier with ``predict_proba``; else nothing."""
    if not hasattr(estimator, "predict_proba") or len(y) == 0:
        return {}
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    if proba.ndim != 2:
        return {}
    result = calibrate(proba, y, np.asarray(estimator.classes_), seed)
    return {"calibration": result.metadata.model_dump()}


def card_lines(calibration: dict[str, Any] | None) -> list[str]:
    """The model card's calibration section (empty for regressors)."""
    if not calibration:
        return []
    lines = [
        "## Calibration",
        "",
        f"Expected calibration error of the top-class probability on {calibration['rows']} "
        f"held-out rows: {calibration['ece']:.4f}.",
    ]
    if calibration.get("map"):
        lines.append(
            f"Above {MAX_ECE}: an isotonic map (stored in metadata.json, applied by the server "
            f"to the live confidence) brings it to {calibration['ece_calibrated']:.4f} "
            "(cross-fitted on the held-out rows)."
        )
    lines += ["", "| confidence | rows | mean confidence | accuracy |", "|---|---:|---:|---:|"]
    lines += [
        f"| {b['lower']:.1f}-{b['upper']:.1f} | {b['count']} | {b['confidence']:.3f} | "
        f"{b['accuracy']:.3f} |"
        for b in calibration["bins"]
    ]
    return [*lines, ""]
