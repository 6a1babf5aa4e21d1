"""Reading a model trained elsewhere: a joblib/pickle file, a ``.skops`` file, or an MLflow
sklearn model directory, into the estimator, the exact bytes it came from and their format;
and the sample it is checked on (CSV or Parquet).

``modelserve register`` stores those bytes unchanged when the format stays the same, so what
the registry serves is byte for byte what the owner produced. Unpickling runs code, exactly
like ``joblib.load`` in the owner's notebook: register is meant to be run by the artifact's
owner (their CI) on their own files. skops files are read with the registry's trusted-type
rules (``app.registry.artifacts``) and never run code. mlflow itself is not needed: the
``MLmodel`` file is YAML, and the model file is a pickle or a skops file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import pandas as pd
import yaml

from app.registry import artifacts
from app.registry.artifacts import ArtifactFormat
from app.registry.metadata import FeatureKind

SourceKind = Literal["joblib", "skops", "mlflow"]
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
MLMODEL = "MLmodel"
# MLflow column types -> the JSON kind a request sends for that feature.
SIGNATURE_KINDS: dict[str, FeatureKind] = {
    "double": "number",
    "float": "number",
    "long": "integer",
    "integer": "integer",
    "boolean": "boolean",
    "string": "string",
}


class ArtifactInputError(ValueError):
    """The artifact cannot be read as a scikit-learn model; the message is one line."""


@dataclass(frozen=True)
class ArtifactInput:
    estimator: Any
    data: bytes
    """The model file's exact bytes (for an MLflow directory, the pickled model file)."""
    fmt: ArtifactFormat
    kind: SourceKind
    path: str
    """The artifact as the user named it (recorded in metadata ``source.path``)."""
    signature: list[tuple[str, FeatureKind]] | None = None
    """An MLflow column signature's ``(name, kind)`` per input, in order."""
    recorded_sklearn: str | None = None
    """The scikit-learn version the MLflow ``MLmodel`` says the model was saved with."""
    notes: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _fail(path: str, message: str) -> ArtifactInputError:
    return ArtifactInputError(f"{path}: {message}")


def _unpickle(data: bytes, path: str, notes: list[str]) -> Any:
    """``joblib.load`` (which also reads plain pickles), as the registry will load it.

    Any exception means a corrupt or foreign file, whatever its class: it becomes one line.
    scikit-learn's warning that the pickle comes from another version becomes a note.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            estimator = joblib.load(io.BytesIO(data))
        except Exception as exc:
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise _fail(path, f"cannot unpickle: {type(exc).__name__}: {detail}") from None
    notes.extend(
        str(w.message).splitlines()[0]
        for w in caught
        if type(w.message).__name__ == "InconsistentVersionWarning"
    )
    return estimator


def _load(data: bytes, fmt: ArtifactFormat, path: str, notes: list[str]) -> Any:
    if fmt == "joblib":
        return _unpickle(data, path, notes)
    try:
        return artifacts.load(data, "skops", path)
    except artifacts.ArtifactError as exc:
        raise ArtifactInputError(str(exc)) from None


def _signature(mlmodel: dict[str, Any], path: str) -> list[tuple[str, FeatureKind]] | None:
    """Column signatures name and type each input; tensor signatures (arrays) say neither."""
    inputs = (mlmodel.get("signature") or {}).get("inputs")
    if not inputs:
        return None
    try:
        specs = json.loads(inputs) if isinstance(inputs, str) else inputs
    except json.JSONDecodeError as exc:
        raise _fail(path, f"signature.inputs is not JSON: {exc}") from None
    if not isinstance(specs, list) or not all(isinstance(s, dict) and "name" in s for s in specs):
        return None
    columns: list[tuple[str, FeatureKind]] = []
    for spec in specs:
        kind = SIGNATURE_KINDS.get(str(spec.get("type")))
        if kind is None:
            raise _fail(
                path,
                f"signature input {spec['name']!r} has type {spec.get('type')!r}; modelserve "
                f"serves {', '.join(SIGNATURE_KINDS)} columns",
            )
        columns.append((str(spec["name"]), kind))
    return columns


def _mlflow(directory: Path, shown: str) -> ArtifactInput:
    try:
        mlmodel = yaml.safe_load((directory / MLMODEL).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(shown, f"cannot read {MLMODEL}: {exc}") from None
    flavours = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    flavour = flavours.get("sklearn") if isinstance(flavours, dict) else None
    if not isinstance(flavour, dict) or not flavour.get("pickled_model"):
        raise _fail(shown, f"{MLMODEL} has no sklearn flavour (flavors.sklearn.pickled_model)")
    serialization = str(flavour.get("serialization_format", "cloudpickle"))
    if serialization not in ("pickle", "cloudpickle", "skops"):
        raise _fail(shown, f"unsupported sklearn serialization_format {serialization!r}")
    if serialization == "cloudpickle" and importlib.util.find_spec("cloudpickle") is None:
        raise _fail(shown, "the model is a cloudpickle; install cloudpickle to read it")
    model_file = directory / str(flavour["pickled_model"])
    if directory.resolve() not in model_file.resolve().parents:
        raise _fail(shown, f"pickled_model {flavour['pickled_model']!r} is outside the directory")
    fmt: ArtifactFormat = "skops" if serialization == "skops" else "joblib"
    data = _read(model_file, str(model_file))
    notes: list[str] = []
    return ArtifactInput(
        _load(data, fmt, str(model_file), notes),
        data,
        fmt,
        "mlflow",
        shown,
        signature=_signature(mlmodel, shown),
        recorded_sklearn=str(flavour["sklearn_version"])
        if flavour.get("sklearn_version")
        else None,
        notes=notes,
    )


def _read(path: Path, shown: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _fail(shown, f"cannot read: {exc.strerror or exc}") from None


def read_artifact(path: Path) -> ArtifactInput:
    """The estimator in ``path`` with its bytes; ``ArtifactInputError`` if it is not one.

    The suffix picks the reader (``.joblib``/``.pkl``/``.pickle``, ``.skops``); a directory
    must be an MLflow model with a sklearn flavour. Whatever was loaded must ``predict``.
    """
    shown = str(path)
    if path.is_dir():
        loaded = _mlflow(path, shown)
    elif path.suffix in (*PICKLE_SUFFIXES, ".skops"):
        fmt: ArtifactFormat = "skops" if path.suffix == ".skops" else "joblib"
        data, notes = _read(path, shown), list[str]()
        loaded = ArtifactInput(_load(data, fmt, shown, notes), data, fmt, fmt, shown, notes=notes)
    elif not path.exists():
        raise _fail(shown, "no such file or directory")
    else:
        raise _fail(
            shown,
            f"unknown artifact type; expected {', '.join(PICKLE_SUFFIXES)}, .skops or an "
            f"MLflow model directory ({MLMODEL})",
        )
    if not callable(getattr(loaded.estimator, "predict", None)):
        raise _fail(
            shown,
            f"not a scikit-learn estimator: a {type(loaded.estimator).__name__} has no predict",
        )
    return loaded


def _serialize(estimator: Any, fmt: ArtifactFormat) -> bytes:
    if fmt == "skops":
        import skops.io

        data: bytes = skops.io.dumps(estimator)
        return data
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


def stored_bytes(loaded: ArtifactInput, fmt: ArtifactFormat, row: Any) -> bytes:
    """What the registry stores as ``fmt``: the input's own bytes when the format stays.

    Otherwise the estimator is re-serialized, loaded back the way the server will load it
    (skops through the trusted-type check), and must predict ``row`` exactly as the input
    does: a conversion must not change the model.
    """
    if fmt == loaded.fmt:
        return loaded.data
    data, source = _serialize(loaded.estimator, fmt), f"the {fmt} conversion"
    try:
        again = artifacts.load(data, fmt, source)
        same = np.array_equal(again.predict(row), loaded.estimator.predict(row))
    except artifacts.ArtifactError as exc:  # types outside the skops allow-list
        raise ArtifactInputError(str(exc)) from None
    except Exception as exc:  # whatever a model that cannot predict once converted raises
        raise ArtifactInputError(f"{source} cannot predict: {type(exc).__name__}: {exc}") from None
    if not same:
        raise ArtifactInputError(f"{source} predicts differently from {loaded.path}")
    return data


def read_sample(path: Path) -> pd.DataFrame:
    """A CSV, or a Parquet file (``.parquet``/``.pq``, needs pyarrow or fastparquet)."""
    try:
        parquet = path.suffix in (".parquet", ".pq")
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path)
    except (OSError, ValueError, ImportError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactInputError(f"cannot read the sample {path}: {first}") from None
    if frame.empty:
        raise ArtifactInputError(f"the sample {path} has no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame
