"""Scoring a model on held-out data, the accuracy gate and the champion/challenger table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn import metrics as skm

from app.registry.metadata import Task
from app.training.spec import HIGHER_IS_BETTER


def score(
    estimator: Any, task: Task, X: npt.NDArray[np.float64], y: npt.NDArray[Any]
) -> dict[str, float]:
    """Classifiers: accuracy, precision, recall, f1, roc_auc; regressors: rmse, mae, r2."""
    pred = np.asarray(estimator.predict(X))
    if task == "regression":
        return {
            "rmse": float(math.sqrt(skm.mean_squared_error(y, pred))),
            "mae": float(skm.mean_absolute_error(y, pred)),
            "r2": float(skm.r2_score(y, pred)),
        }
    classes = np.unique(y)
    binary = len(classes) == 2
    average = "binary" if binary else "macro"
    pos_label = classes[-1] if binary else 1
    out = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(
            skm.precision_score(y, pred, average=average, pos_label=pos_label, zero_division=0)
        ),
        "recall": float(
            skm.recall_score(y, pred, average=average, pos_label=pos_label, zero_division=0)
        ),
        "f1": float(skm.f1_score(y, pred, average=average, pos_label=pos_label, zero_division=0)),
    }
    if hasattr(estimator, "predict_proba"):
        proba = np.asarray(estimator.predict_proba(X))
        model_classes = list(estimator.classes_)
        if binary and len(model_classes) == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y, proba[:, 1]))
        elif set(classes) <= set(model_classes):
            out["roc_auc"] = float(
                skm.roc_auc_score(y, proba, multi_class="ovr", labels=model_classes)
            )
    return out


def passes(metric: str, value: float, bound: float) -> bool:
    return value >= bound if HIGHER_IS_BETTER[metric] else value <= bound


@dataclass(frozen=True)
class GateResult:
    metric: str
    value: float | None
    bound: float
    ok: bool

    @property
    def rule(self) -> str:
        return f"{self.metric} {'>=' if HIGHER_IS_BETTER[self.metric] else '<='} {self.bound}"


def gate(scores: dict[str, float], thresholds: dict[str, float]) -> list[GateResult]:
    results = []
    for metric, bound in thresholds.items():
        value = scores.get(metric)
        ok = value is not None and passes(metric, value, bound)
        results.append(GateResult(metric, value, bound, ok))
    return results


@dataclass(frozen=True)
class Comparison:
    """Candidate vs production on the same held-out rows."""

    champion_version: str | None
    candidate: dict[str, float]
    champion: dict[str, float] | None
    primary: str
    tolerance: float

    @property
    def candidate_not_worse(self) -> bool:
        if self.champion is None or self.primary not in self.champion:
            return True
        cand, champ = self.candidate[self.primary], self.champion[self.primary]
        if HIGHER_IS_BETTER[self.primary]:
            return cand >= champ - self.tolerance
        return cand <= champ + self.tolerance

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for metric, cand in self.candidate.items():
            champ = (self.champion or {}).get(metric)
            rows.append(
                {
                    "metric": metric,
                    "candidate": cand,
                    "production": champ,
                    "delta": None if champ is None else cand - champ,
                    "higher_is_better": HIGHER_IS_BETTER.get(metric, True),
                }
            )
        return rows

    def table(self) -> str:
        prod = f"production (v{self.champion_version})" if self.champion_version else "production"
        lines = [f"| metric | candidate | {prod} | delta |", "|---|---:|---:|---:|"]
        for row in self.rows():
            champ = "-" if row["production"] is None else f"{row['production']:.4f}"
            delta = "-" if row["delta"] is None else f"{row['delta']:+.4f}"
            metric = row["metric"] + (" (primary)" if row["metric"] == self.primary else "")
            lines.append(f"| {metric} | {row['candidate']:.4f} | {champ} | {delta} |")
        return "\n".join(lines)
