"""The real ``modelserve register`` on a notebook's joblib.dump, an MLflow model directory and
artifacts it must refuse, run as a subprocess against a private registry."""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from app.registry.store import Registry
from tests.helpers.mixed import city_income_pipeline
from tests.helpers.support import copy_registry, run_cli

pytestmark = pytest.mark.slow  # the modelserve CLI as subprocesses

NAME = "customers"
FEATURES = ["city", "income", "member", "age"]


def _tree(root: Path) -> dict[str, str]:
    """Every path under the registry (directories too), with each file's sha256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


def _notebook(n: int = 240) -> tuple[pd.DataFrame, Pipeline]:
    """What a notebook holds: a table with strings, numbers, booleans and gaps, a fitted model."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "city": pd.Series(rng.choice(["oslo", "paris", "rome"], n), dtype=object),
            "income": rng.normal(50, 10, n).round(2),
            "member": rng.choice([True, False], n),
            "age": rng.integers(18, 80, n),
        }
    )
    frame.loc[::9, "city"] = None
    frame.loc[::7, "income"] = np.nan
    frame["churned"] = ((frame.income.fillna(50) > 52) | (frame.city == "oslo")).astype(int)
    model = city_income_pipeline()
    return frame, model.fit(frame[FEATURES], frame["churned"])


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return copy_registry(tmp_path / "models")


@pytest.fixture
def notebook(tmp_path: Path) -> tuple[pd.DataFrame, Pipeline, Path, Path]:
    """The frame, the model, its ``joblib.dump`` and the frame as a CSV sample."""
    frame, model = _notebook()
    artifact, sample = tmp_path / "churn.joblib", tmp_path / "sample.csv"
    joblib.dump(model, artifact)
    frame.to_csv(sample, index=False)
    return frame, model, artifact, sample


def test_a_notebook_joblib_dump_is_registered_with_its_schema(
    registry: Path, tmp_path: Path, notebook: tuple[pd.DataFrame, Pipeline, Path, Path]
) -> None:
    frame, model, artifact, sample = notebook
    report, summary = tmp_path / "report.json", tmp_path / "summary.md"
    done = run_cli(
        "register", NAME, str(artifact), "--sample", str(sample), "--target", "churned",
        "--registry", str(registry), "--report", str(report), "--summary", str(summary),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "registered customers version 1, not promoted" in done.stdout
    assert "| accuracy (primary) |" in summary.read_text()
    assert json.loads(report.read_text())["status"] == "registered"

    listed = run_cli("versions", NAME, "--registry", str(registry))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("1\t-\t") and "accuracy=" in listed.stdout

    meta = json.loads((registry / NAME / "1" / "metadata.json").read_text())
    features = {f["name"]: f for f in meta["features"]}
    assert list(features) == FEATURES
    assert {n: f["kind"] for n, f in features.items()} == {
        "city": "string",
        "income": "number",
        "member": "boolean",
        "age": "integer",
    }
    assert features["city"]["categories"] == ["oslo", "paris", "rome"]
    assert features["city"]["nullable"] and features["income"]["nullable"]
    assert not features["member"]["nullable"]
    assert meta["input_format"] == "frame" and meta["target"] == "churned"
    assert meta["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert meta["source"] == {"kind": "joblib", "path": str(artifact)}
    assert meta["metrics"]["accuracy"] > 0.85
    served = Registry(registry).load(NAME, "1").estimator
    assert np.array_equal(served.predict(frame[FEATURES]), model.predict(frame[FEATURES]))


def _mlflow_by_hand(model: Pipeline, frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """The layout ``mlflow.sklearn.save_model`` writes, for when mlflow is not installed."""
    path.mkdir()
    model_file = "model.skops" if fmt == "skops" else "model.pkl"
    if fmt == "skops":
        import skops.io

        skops.io.dump(model, path / model_file)
    else:
        with (path / model_file).open("wb") as fh:
            pickle.dump(model, fh)
    types = {"object": "string", "float64": "double", "bool": "boolean", "int64": "long"}
    inputs = [{"type": types[str(t)], "name": c, "required": True} for c, t in frame.dtypes.items()]
    mlmodel = {
        "flavors": {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": model_file},
            "sklearn": {
                "code": None,
                "pickled_model": model_file,
                "serialization_format": fmt,
                "sklearn_version": sklearn.__version__,
            },
        },
        "signature": {"inputs": json.dumps(inputs)},
        "utc_time_created": "2026-01-01 00:00:00",
        "python_version": platform.python_version(),
    }
    (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))


def _mlflow_dir(model: Pipeline, frame: pd.DataFrame, path: Path, fmt: str) -> None:
    try:
        import mlflow.sklearn
        from mlflow.models import infer_signature
    except ImportError:
        _mlflow_by_hand(model, frame, path, "pickle" if fmt == "cloudpickle" else fmt)
        return
    signature = infer_signature(frame, model.predict(frame))
    mlflow.sklearn.save_model(model, str(path), serialization_format=fmt, signature=signature)


def _numeric(frame: pd.DataFrame) -> tuple[pd.DataFrame, Pipeline]:
    """Numbers only: a model skops can store with scikit-learn types alone."""
    numbers = pd.DataFrame({"income": frame.income.fillna(50.0), "age": frame.age})
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(numbers, frame.churned)
    return numbers, model


@pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer column")
@pytest.mark.parametrize(
    ("fmt", "kinds"),
    [
        # The signature types what the estimator alone cannot: booleans and integers.
        (
            "cloudpickle",
            {"city": "string", "income": "number", "member": "boolean", "age": "integer"},
        ),
        ("skops", {"income": "number", "age": "integer"}),
        (
            "pickle-by-hand",
            {"city": "string", "income": "number", "member": "boolean", "age": "integer"},
        ),
    ],
)
def test_an_mlflow_model_directory_is_registered_and_predicts_the_same(
    registry: Path, tmp_path: Path, fmt: str, kinds: dict[str, str]
) -> None:
    frame, model = _notebook()
    X = frame[FEATURES]
    if fmt == "skops":
        X, model = _numeric(frame)
    directory = tmp_path / "mlflow-model"
    if fmt == "pickle-by-hand":
        _mlflow_by_hand(model, X, directory, "pickle")
    else:
        _mlflow_dir(model, X, directory, fmt)
    flavour = yaml.safe_load((directory / "MLmodel").read_text())["flavors"]["sklearn"]
    model_file = directory / flavour["pickled_model"]

    done = run_cli("register", NAME, str(directory), "--registry", str(registry), "--promote")
    assert done.returncode == 0, done.stderr
    assert "no --sample" in done.stderr  # one line: no metrics, drift off

    loaded = Registry(registry).load(NAME, "1")
    assert loaded.metadata.format == ("skops" if fmt == "skops" else "joblib")
    assert loaded.metadata.sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert loaded.path.read_bytes() == model_file.read_bytes()
    assert np.array_equal(loaded.estimator.predict(X), model.predict(X))
    assert np.array_equal(loaded.estimator.predict_proba(X), model.predict_proba(X))
    assert {f.name: f.kind for f in loaded.metadata.features} == kinds
    assert loaded.metadata.model_extra is not None
    assert loaded.metadata.model_extra["source"] == {"kind": "mlflow", "path": str(directory)}
    assert Registry(registry).alias_history(NAME)[-1]["reason"] == "register"


def test_refused_artifacts_and_samples_write_nothing(
    registry: Path, tmp_path: Path, notebook: tuple[pd.DataFrame, Pipeline, Path, Path]
) -> None:
    frame, _model, artifact, sample = notebook
    corrupt = tmp_path / "corrupt.joblib"
    corrupt.write_bytes(artifact.read_bytes()[: len(artifact.read_bytes()) // 2])
    mismatched = tmp_path / "mismatched.csv"
    frame.drop(columns="age").rename(columns={"city": "town"}).to_csv(mismatched, index=False)
    cases = [
        ((str(corrupt),), 1, "cannot unpickle"),
        ((str(artifact), "--sample", str(mismatched), "--target", "churned"), 1, "town"),
        (
            (str(artifact), "--sample", str(sample), "--target", "churned"),
            4,
            "gate failed: accuracy >= 0.999",
        ),
    ]
    before = _tree(registry)
    for args, code, message in cases:
        gate = ("--gate", "accuracy>=0.999") if code == 4 else ()
        done = run_cli("register", NAME, *args, *gate, "--registry", str(registry), "--promote")
        assert done.returncode == code, (args, done.stdout, done.stderr)
        assert message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert _tree(registry) == before, args
    assert not (registry / NAME).exists()
