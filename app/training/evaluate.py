"""Scoring a model on held-out data, the accuracy gate and the champion/challenger table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.registry.metadata import Task
from app.training.quality import METRICS, HeldOut, for_task, higher_is_better


def score(
    estimator: Any, task: Task, X: npt.NDArray[Any] | pd.DataFrame, y: npt.NDArray[Any]
) -> dict[str, float]:
    """Every metric of the task (``app.training.quality``) that applies to this estimator."""
    pred = np.asarray(estimator.predict(X))
    proba, model_classes = None, ()
    if task == "classification" and hasattr(estimator, "predict_proba"):
        proba, model_classes = np.asarray(estimator.predict_proba(X)), tuple(estimator.classes_)
    held_out = HeldOut(y, pred, np.unique(y), proba, model_classes)
    values = {m.name: m.compute(held_out) for m in for_task(task)}
    return {name: value for name, value in values.items() if value is not None}


def passes(metric: str, value: float, bound: float) -> bool:
    return value >= bound if METRICS[metric].higher_is_better else value <= bound


@dataclass(frozen=True)
class GateResult:
    metric: str
    value: float | None
    bound: float
    ok: bool

    @property
    def rule(self) -> str:
        return (
            f"{self.metric} {'>=' if METRICS[self.metric].higher_is_better else '<='} {self.bound}"
        )


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
        if METRICS[self.primary].higher_is_better:
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
                    "higher_is_better": higher_is_better(metric),
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
