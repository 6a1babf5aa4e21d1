"""The training pipeline: validate data, fit, gate, compare with production, register.

``run()`` never raises for a failing candidate: it returns an ``Outcome`` whose typed fields
say what happened (the CLI prints them and turns the status into an exit code) and whose
``report`` is the same as a JSON document (what ``--report`` writes and CI uploads). Nothing is
registered unless validation and the gate pass.
"""

from __future__ import annotations

import importlib
import logging
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import sklearn
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline

from app.registry.metadata import Label, Task
from app.registry.store import Registry
from app.training import appended, background
from app.training import data as data_mod
from app.training.calibration import calibration_fields
from app.training.card import model_card
from app.training.compare import PRODUCTION, judge, production_of
from app.training.evaluate import Comparison, GateResult, score
from app.training.quality import METRICS
from app.training.reference import build_reference, data_fingerprint
from app.training.spec import SpecError, StepSpec, TrainSpec
from app.training.validate import ValidationReport, split_schema, table_schema, validate

log = logging.getLogger(__name__)

Status = Literal["registered", "validation_failed", "gate_failed"]


@dataclass
class Outcome:
    status: Status
    report: dict[str, Any] = field(default_factory=dict)
    """The ``--report`` JSON document; the typed fields below carry the same facts."""
    version: str | None = None
    promoted: bool = False
    comparison: Comparison | None = None
    validation: ValidationReport = field(default_factory=ValidationReport)
    gates: list[GateResult] = field(default_factory=list)
    """Empty when validation failed: nothing was fitted, so nothing was gated."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The candidate's held-out scores (the version's metadata adds the CV scores)."""


def _step(step: StepSpec, seed: int) -> Any:
    module_name, _, attr = step.class_.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SpecError(f"cannot import {step.class_!r}: {exc}") from None
    try:
        obj = factory(**step.params)
    except TypeError as exc:
        raise SpecError(f"{step.class_}: bad params {step.params}: {exc}") from None
    if not hasattr(obj, "fit"):
        raise SpecError(f"{step.class_} is not a scikit-learn estimator (no fit method)")
    if "random_state" in obj.get_params(deep=False) and "random_state" not in step.params:
        obj.set_params(random_state=seed)  # runs are reproducible from the spec's seed
    return obj


def build_estimator(spec: TrainSpec) -> Any:
    model = _step(spec.estimator, spec.seed)
    if not spec.preprocessing:
        return model
    steps = [
        (s.name or f"{s.class_.rpartition('.')[2].lower()}_{i}", _step(s, spec.seed))
        for i, s in enumerate(spec.preprocessing)
    ]
    return Pipeline([*steps, (spec.estimator.name or "model", model)])


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return repr(value)


def estimator_params(estimator: Any) -> dict[str, Any]:
    """Every hyper-parameter (defaults included), per pipeline step, as plain JSON values."""
    steps = estimator.steps if isinstance(estimator, Pipeline) else [("model", estimator)]
    return {
        name: {k: _plain(v) for k, v in sorted(step.get_params(deep=False).items())}
        for name, step in steps
    }


def class_labels(estimator: Any) -> list[Label] | None:
    """A classifier's ``classes_`` as plain Python values (JSON, metadata.json); None for a
    multi-output classifier, whose ``classes_`` is one array per output."""
    if isinstance(estimator.classes_, list):
        return None
    return [c.item() if hasattr(c, "item") else c for c in estimator.classes_]


def environment() -> dict[str, str]:
    """The interpreter and the installed scikit-learn, which will also load the artifact."""
    return {"python_version": platform.python_version(), "sklearn_version": sklearn.__version__}


def fitted_fields(
    estimator: Any,
    task: Task,
    feature_names: Sequence[str],
    X_train: npt.NDArray[np.float64],
    y_train: npt.NDArray[Any],
    example: Sequence[float],
) -> dict[str, Any]:
    """The metadata every version carries that follows from a fitted estimator and its data.

    ``run()`` adds the spec, metrics, split sizes and git commit; code that fits a model by
    other means (benchmarks, tests) registers these fields alone.
    """
    classes = class_labels(estimator) if task == "classification" else None
    return {
        **environment(),
        "task": task,
        "features": [{"name": n, "dtype": "float64"} for n in feature_names],
        "classes": classes,
        "data_fingerprint": data_fingerprint(X_train, y_train),
        "example": [float(v) for v in example],
        "background": background.matrix_rows(X_train),
        "reference": build_reference(
            X_train, y_train, feature_names, classification=task == "classification"
        ),
        "params": estimator_params(estimator),
    }


def git_commit(cwd: Any) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cv_scores(spec: TrainSpec, estimator: Any, split: data_mod.Split) -> dict[str, float]:
    folds = spec.split.cv_folds
    if folds < 2:
        return {}
    splitter = (StratifiedKFold if spec.task == "classification" else KFold)(
        n_splits=folds, shuffle=True, random_state=spec.seed
    )
    metric = METRICS[spec.primary_metric]
    values = cross_val_score(
        clone(estimator), split.inputs_train, split.y_train, cv=splitter, scoring=metric.cv_scoring
    )
    values = np.abs(values) if metric.cv_negated else values
    name = metric.name
    return {f"cv_{name}_mean": float(values.mean()), f"cv_{name}_std": float(values.std())}


def run(
    spec: TrainSpec,
    registry: Registry,
    *,
    promote_if_better: bool = False,
    tolerance: float | None = None,
) -> Outcome:
    tolerance = spec.gate.tolerance if tolerance is None else tolerance
    report: dict[str, Any] = {"name": spec.name, "spec": spec.model_dump(mode="json")}
    production = production_of(registry, spec.name)
    prod_meta = production[1] if production else None
    frame, from_production = appended.with_production(spec, data_mod.load_frame(spec))
    features = prod_meta.feature_names if prod_meta and spec.data.features is None else None
    features = features or data_mod.feature_columns(spec, frame)

    schema = data_mod.feature_schema(spec, frame, features, prod_meta)
    checks = validate(table_schema(spec, schema, prod_meta), frame)
    if checks.ok:
        split = data_mod.split(spec, frame, schema)
        checks.extend(validate(split_schema(split.train, features), split.test[features]))
    report["validation"] = checks.as_dict()
    if not checks.ok:
        report["status"] = "validation_failed"
        return Outcome("validation_failed", report, validation=checks)

    estimator = build_estimator(spec)
    estimator.fit(split.inputs_train, split.y_train)
    candidate = score(estimator, spec.task, split.inputs_test, split.y_test)
    live = appended.production_held_out(split, from_production) if spec.data.append else None
    on = live or split
    comparison, gates = judge(
        registry,
        spec.name,
        production,
        candidate,
        lambda champion, meta: score(champion, spec.task, on.held_out_for(meta), on.y_test),
        spec.thresholds,
        spec.primary_metric,
        tolerance,
        report,
        None if live is None else score(estimator, spec.task, on.inputs_test, on.y_test),
        "held-out rows" if live is None else f"{len(live.y_test)} held-out production rows",
    )
    if not all(g.ok for g in gates):
        report["status"] = "gate_failed"
        return Outcome(
            "gate_failed",
            report,
            comparison=comparison,
            validation=checks,
            gates=gates,
            metrics=candidate,
        )

    metrics = {**candidate, **_cv_scores(spec, estimator, split)}
    fields: dict[str, Any] = {
        **fitted_fields(
            estimator, spec.task, split.matrix_names, split.X_train, split.y_train, split.X_test[0]
        ),
        **split.typed_fields(classification=spec.task == "classification"),
        "target": spec.data.target,
        "metrics": metrics,
        "spec": spec.model_dump(mode="json", by_alias=True),
        "git_commit": git_commit(spec.base_dir),
        "rows": {"train": len(split.train), "test": len(split.test)},
        **calibration_fields(estimator, split.inputs_test, split.y_test, spec.seed),
    }
    if spec.data.append:
        fields["rows"]["production"] = int(from_production.sum())
    report["calibration"] = fields.get("calibration")
    rows = (len(split.train), len(split.test))

    def card(version: str) -> dict[str, str]:
        text = model_card(
            spec, version=version, metadata=fields, comparison_table=comparison.table(), rows=rows
        )
        return {"MODEL_CARD.md": text}

    meta = registry.register(spec.name, estimator, fields, extra_files=card, fmt=spec.format)
    promoted = False
    if promote_if_better and comparison.candidate_not_worse:
        registry.set_alias(spec.name, PRODUCTION, meta.version, reason="train --promote-if-better")
        promoted = True
    report.update(status="registered", version=meta.version, promoted=promoted)
    return Outcome(
        "registered",
        report,
        meta.version,
        promoted,
        comparison,
        validation=checks,
        gates=gates,
        metrics=candidate,
    )
