"""Registering a model trained elsewhere (``modelserve register``): read, check, gate, store.

The artifact is read (``artifact_input``), its feature schema inferred from the estimator and
an optional sample (``schema_infer``), and one row is smoke-predicted in the form the server
will give it, all before anything is written. With a sample and its target the model is
scored, gated and compared with production exactly as ``train`` does (``compare.judge``), and
nothing is registered unless every check holds. The version stores the input's bytes
unchanged when the format stays the same. ``run()`` prints nothing: it raises
``RegisterError`` for a refusal (exit 1) and returns a ``RegisterOutcome`` otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import pandera.pandas as pa
import sklearn

from app.registry import names
from app.registry.artifacts import FORMATS, ArtifactFormat
from app.registry.metadata import FeatureSpec, InputFormat, ModelMetadata, Task
from app.registry.store import Registry
from app.training import artifact_input, calibration, compare, schema_infer, train
from app.training.background import frame_rows
from app.training.card import registered_card
from app.training.data import NUMERIC_KINDS, example_row
from app.training.evaluate import score
from app.training.quality import DEFAULT_PRIMARY, DEFAULT_THRESHOLDS, METRICS
from app.training.reference import build_frame_reference, frame_fingerprint
from app.training.validate import ValidationReport, _finite, validate

GATE = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=)\s*(\S+)\s*$")
T = TypeVar("T")


class RegisterError(ValueError):
    """The artifact, the sample or an option is refused; nothing was written."""


@dataclass
class RegisterOutcome(train.Outcome):
    notes: list[str] = field(default_factory=list)
    """Warnings for the user (no sample, another scikit-learn version...)."""
    features: list[FeatureSpec] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    name: str
    artifact: Path
    sample: Path | None = None
    target: str | None = None
    task: str | None = None
    fmt: str | None = None
    gates: tuple[str, ...] = ()
    promote: bool = False


def parse_gates(rules: tuple[str, ...], task: Task) -> dict[str, float]:
    """``("accuracy>=0.9",)`` -> ``{"accuracy": 0.9}``; the direction must be the metric's."""
    out: dict[str, float] = {}
    for rule in rules:
        match = GATE.match(rule)
        metric = METRICS.get(match.group(1)) if match else None
        try:
            bound = float(match.group(3)) if match else None
        except ValueError:
            bound = None
        if match is None or metric is None or metric.task != task or bound is None:
            known = ", ".join(m.name for m in METRICS.values() if m.task == task)
            raise RegisterError(f"--gate {rule!r}: expected METRIC>=X or METRIC<=X with {known}")
        if (match.group(2) == ">=") != metric.higher_is_better:
            want = ">=" if metric.higher_is_better else "<="
            raise RegisterError(f"--gate {rule!r}: {metric.name} is gated with {want}")
        out[metric.name] = bound
    return out


def _guard(call: Callable[[], T], what: str) -> T:
    """Call the model; whatever it raises, it cannot serve: one line instead of a traceback."""
    try:
        return call()
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise RegisterError(f"the model cannot {what}: {type(exc).__name__}: {message}") from None


def _sample_checks(
    sample: pd.DataFrame, features: list[FeatureSpec], target: str, classes: list[Any] | None
) -> ValidationReport:
    """Finite numbers (missing ones are the schema's business), labels the classifier knows."""
    finite = pa.Check(_finite, name="finite", element_wise=False, ignore_na=True)
    columns = {
        f.name: pa.Column(None, finite, nullable=True) for f in features if f.kind in NUMERIC_KINDS
    }
    columns[target] = pa.Column(None, finite)
    if classes is not None:
        known = {str(c) for c in classes}
        is_class = pa.Check(lambda s: s.astype(str).isin(known), name=f"label_in{sorted(known)}")
        columns[target] = pa.Column(None, is_class)
    return validate(pa.DataFrameSchema(columns), sample)


def _task(request: Request, estimator: Any) -> Task:
    task = request.task or ("classification" if hasattr(estimator, "classes_") else "regression")
    if task not in ("classification", "regression"):
        raise RegisterError(f"--task must be classification or regression, not {task!r}")
    if task == "classification" and not hasattr(estimator, "classes_"):
        raise RegisterError("--task classification, but the estimator has no classes_")
    return "classification" if task == "classification" else "regression"


@dataclass(frozen=True)
class _Candidate:
    """Everything known before anything is written: read, inferred and smoke-tested."""

    loaded: artifact_input.ArtifactInput
    fmt: ArtifactFormat
    data: bytes
    task: Task
    features: list[FeatureSpec]
    input_format: InputFormat
    first: pd.DataFrame
    """The sample's first row, or the schema's example: the version's ``example``."""
    sample: pd.DataFrame | None
    thresholds: dict[str, float]


def _prepare(request: Request, notes: list[str]) -> _Candidate:
    try:
        names.checked_name(request.name)
    except names.InvalidNameError as exc:
        raise RegisterError(str(exc)) from None
    loaded = artifact_input.read_artifact(request.artifact)
    fmt, estimator, target = request.fmt or loaded.fmt, loaded.estimator, request.target
    if fmt not in FORMATS:
        raise RegisterError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    notes.extend(loaded.notes)
    if loaded.recorded_sklearn and loaded.recorded_sklearn != sklearn.__version__:
        notes.append(
            f"MLmodel records scikit-learn {loaded.recorded_sklearn}; the installed "
            f"{sklearn.__version__} loads and serves it"
        )
    task = _task(request, estimator)
    sample = artifact_input.read_sample(request.sample) if request.sample else None
    if target is not None and (sample is None or target not in sample.columns):
        raise RegisterError(f"--target {target!r}: the sample has no such column")
    thresholds = parse_gates(request.gates, task) or DEFAULT_THRESHOLDS[task]
    if request.gates and target is None:
        raise RegisterError("--gate needs --sample and --target to score the model")
    features = schema_infer.infer_features(estimator, sample, target, loaded.signature)
    input_format = schema_infer.input_format(estimator)
    first = sample.iloc[:1] if sample is not None else None
    if first is None:
        first = pd.DataFrame(
            [schema_infer.example_row(features)], columns=[f.name for f in features]
        )
    row = schema_infer.model_input(first, features, input_format)
    where = "the sample's first row" if sample is not None else "an example row"
    answer = _guard(lambda: estimator.predict(row), f"predict {where}")
    outputs = np.shape(answer)[1] if np.ndim(answer) == 2 else 1
    if outputs > 1 and target is not None:
        raise RegisterError(
            f"--target {target!r}: the model predicts {outputs} values per row (multi-output), "
            "which one label column cannot score; register it without --target and --gate "
            "(no metrics, no gate)"
        )
    stored_fmt: ArtifactFormat = "skops" if fmt == "skops" else "joblib"
    data = artifact_input.stored_bytes(loaded, stored_fmt, row)
    return _Candidate(
        loaded, stored_fmt, data, task, features, input_format, first, sample, thresholds
    )


def run(request: Request, registry: Registry) -> RegisterOutcome:
    notes: list[str] = []
    try:
        c = _prepare(request, notes)
    except (artifact_input.ArtifactInputError, schema_infer.SchemaError) as exc:
        raise RegisterError(str(exc)) from None
    name, estimator, target, sample = request.name, c.loaded.estimator, request.target, c.sample
    classes = train.class_labels(estimator) if c.task == "classification" else None
    report: dict[str, Any] = {
        "name": name,
        "source": {"kind": c.loaded.kind, "path": c.loaded.path, "sha256": c.loaded.sha256},
        "format": c.fmt,
        "input_format": c.input_format,
        "features": [f.model_dump() for f in c.features],
        "notes": notes,
    }
    out = RegisterOutcome("registered", report, notes=notes, features=c.features)
    if target is None:
        missing = "no --sample" if sample is None else "no --target"
        drift = "off (no reference)" if sample is None else "on for the features only"
        notes.append(f"{missing}: no metrics and no gate; drift monitoring is {drift}")
    y: npt.NDArray[Any] = np.empty(0)
    if sample is not None and target is not None:
        out.validation = _sample_checks(sample, c.features, target, classes)
        report["validation"] = out.validation.as_dict()
        if not out.validation.ok:
            out.status = report["status"] = "validation_failed"
            return out
        y = sample[target].to_numpy()
        if classes is not None:  # "1" read from a CSV is the class the model knows as 1 or "1"
            by_text = {str(k): k for k in estimator.classes_}
            y = np.asarray([by_text[str(v)] for v in y], dtype=estimator.classes_.dtype)
        X: Any = schema_infer.model_input(sample, c.features, c.input_format)
        out.metrics = _guard(lambda: score(estimator, c.task, X, y), "score the sample")

        def champion(model: Any, meta: ModelMetadata) -> dict[str, float]:
            try:
                theirs: Any = schema_infer.model_input(sample, meta.features, meta.input_format)
                return score(model, c.task, theirs, y)
            except Exception as exc:  # production may take other columns: not comparable
                raise ValueError(f"{type(exc).__name__}: {exc}") from None

        production = compare.production_of(registry, name)
        out.comparison, out.gates = compare.judge(
            registry,
            name,
            production,
            out.metrics,
            champion,
            c.thresholds,
            DEFAULT_PRIMARY[c.task],
            0.0,
            report,
        )
        if not all(g.ok for g in out.gates):
            out.status = report["status"] = "gate_failed"
            return out
    _store(registry, request, c, out, y)
    return out


def _store(
    registry: Registry, request: Request, c: _Candidate, out: RegisterOutcome, y: npt.NDArray[Any]
) -> None:
    """Write the version (and move production with ``--promote``); fill in ``out``."""
    name, loaded, sample = request.name, c.loaded, c.sample
    fields: dict[str, Any] = {
        **train.environment(),
        "task": c.task,
        "features": [f.model_dump() for f in c.features],
        "classes": train.class_labels(loaded.estimator) if c.task == "classification" else None,
        "target": request.target or "target",
        "data_fingerprint": f"sha256:{loaded.sha256}",
        "example": example_row(schema_infer.typed_sample(c.first, c.features, c.input_format)),
        "input_format": c.input_format,
        "metrics": out.metrics,
        "params": train.estimator_params(loaded.estimator),
        "source": {"kind": loaded.kind, "path": loaded.path},
    }
    if c.fmt != loaded.fmt:
        fields["converted_from"] = {"format": loaded.fmt, "sha256": loaded.sha256}
    if sample is not None:
        # Drift bins of numbers, integers and booleans; category shares of strings.
        typed = schema_infer.typed_sample(sample, c.features, c.input_format)
        classification = c.task == "classification" and len(y) > 0
        fields["reference"] = build_frame_reference(typed, y, c.features, classification)
        fields["data_fingerprint"] = frame_fingerprint(typed, y)
        fields["rows"] = {"sample": len(sample)}
        fields["background"] = frame_rows(typed)  # what :explain measures from
        if classification:  # the sample's rows stand in for held-out ones
            X = schema_infer.model_input(sample, c.features, c.input_format)
            fields.update(calibration.calibration_fields(loaded.estimator, X, y))
    table = out.comparison.table() if out.comparison else None
    meta = registry.register_bytes(
        name,
        c.data,
        c.fmt,
        fields,
        lambda v: {"MODEL_CARD.md": registered_card(name, v, c.fmt, fields, table)},
        estimator=loaded.estimator,  # for the registry's annotate hook (the CLI's)
    )
    if request.promote:
        registry.set_alias(name, compare.PRODUCTION, meta.version, reason="register")
    out.version, out.promoted = meta.version, request.promote
    out.report.update(status="registered", version=meta.version, promoted=request.promote)
