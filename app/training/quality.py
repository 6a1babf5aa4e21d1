"""Model-quality scores (accuracy, F1, RMSE, ...): the one table of evaluation metrics, what each
applies to, its direction, how to compute it. (Prometheus metrics are `app.metrics`.)

Spec validation (known names), the gate (``>=`` or ``<=``), the champion/challenger table,
cross-validation (scikit-learn scorer names) and held-out scoring all read this table, so a
metric is added or changed in one place. Per task, the table's order is the order metrics are
reported in.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from app.registry.metadata import Task


@dataclass(frozen=True)
class HeldOut:
    """A model's predictions on held-out rows: what every metric's ``compute`` reads."""

    y: npt.NDArray[Any]
    pred: npt.NDArray[Any]
    classes: npt.NDArray[Any]
    """The labels present in ``y``, sorted; unused for regressors."""
    proba: npt.NDArray[np.float64] | None = None
    model_classes: tuple[Any, ...] = ()

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    def averaged(self, fn: Callable[..., Any]) -> float:
        """Two classes: the larger label is the positive one; more: the macro average."""
        average, pos_label = ("binary", self.classes[-1]) if self.binary else ("macro", 1)
        return float(fn(self.y, self.pred, average=average, pos_label=pos_label, zero_division=0))


def _skm() -> ModuleType:
    """``sklearn.metrics``, imported when first scored: it would add a second to the start of
    every CLI command, and most of them (``promote``, ``models``...) never score."""
    return importlib.import_module("sklearn.metrics")


def _accuracy(h: HeldOut) -> float:
    return float(_skm().accuracy_score(h.y, h.pred))


def _precision(h: HeldOut) -> float:
    return h.averaged(_skm().precision_score)


def _recall(h: HeldOut) -> float:
    return h.averaged(_skm().recall_score)


def _f1(h: HeldOut) -> float:
    return h.averaged(_skm().f1_score)


def _roc_auc(h: HeldOut) -> float | None:
    """Omitted without predict_proba, or when the test labels are not all model classes."""
    if h.proba is None:
        return None
    if h.binary and len(h.model_classes) == 2:
        return float(_skm().roc_auc_score(h.y, h.proba[:, 1]))
    if set(h.classes) <= set(h.model_classes):
        labels = list(h.model_classes)
        return float(_skm().roc_auc_score(h.y, h.proba, multi_class="ovr", labels=labels))
    return None


def _rmse(h: HeldOut) -> float:
    return float(math.sqrt(_skm().mean_squared_error(h.y, h.pred)))


def _mae(h: HeldOut) -> float:
    return float(_skm().mean_absolute_error(h.y, h.pred))


def _r2(h: HeldOut) -> float:
    return float(_skm().r2_score(h.y, h.pred))


@dataclass(frozen=True)
class Metric:
    name: str
    task: Task
    higher_is_better: bool
    cv_scoring: str
    """scikit-learn scorer name; ``neg_*`` scorers negate an error so that larger is better."""
    compute: Callable[[HeldOut], float | None]

    @property
    def cv_negated(self) -> bool:
        return self.cv_scoring.startswith("neg_")


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "classification", True, "accuracy", _accuracy),
        Metric("precision", "classification", True, "precision_macro", _precision),
        Metric("recall", "classification", True, "recall_macro", _recall),
        Metric("f1", "classification", True, "f1_macro", _f1),
        Metric("roc_auc", "classification", True, "roc_auc_ovr", _roc_auc),
        Metric("rmse", "regression", False, "neg_root_mean_squared_error", _rmse),
        Metric("mae", "regression", False, "neg_mean_absolute_error", _mae),
        Metric("r2", "regression", True, "r2", _r2),
    )
}
DEFAULT_PRIMARY: dict[Task, str] = {"classification": "accuracy", "regression": "rmse"}
DEFAULT_THRESHOLDS: dict[Task, dict[str, float]] = {
    "classification": {"accuracy": 0.85},
    "regression": {},
}


def for_task(task: Task) -> list[Metric]:
    return [m for m in METRICS.values() if m.task == task]


def higher_is_better(name: str) -> bool:
    """The metric's direction; a name outside the table (none is scored) counts as higher."""
    metric = METRICS.get(name)
    return True if metric is None else metric.higher_is_better
