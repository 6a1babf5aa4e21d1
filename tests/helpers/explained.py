"""What :explain must answer, computed here independently of app.serving.explain.

``owned_columns`` reads which transformed columns come from which original feature off the
fitted transformers themselves (a one-hot encoder's categories, one column per input for the
others), where the server traces them by probing; ``linear_contributions`` is
``coef * (T(x) - mean of T(background))`` summed over each feature's columns;
``shap_contributions`` is shap's own ``TreeExplainer`` on the same columns, summed the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from app.registry.metadata import ModelMetadata
from app.registry.store import Registry
from app.serving.contract import InputContract, model_input
from app.training.register import Request, run

Matrix = npt.NDArray[np.float64]


def register_fitted(
    registry: Registry, work: Path, name: str, estimator: Any, sample: pd.DataFrame, task: str
) -> ModelMetadata:
    """``estimator`` registered (in-process ``modelserve register``, sample with target ``y``,
    a gate that never refuses) and promoted; its metadata."""
    where = work / name
    where.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, where / "model.joblib")
    sample.to_csv(where / "train.csv", index=False)
    gate = "accuracy>=0" if task == "classification" else "r2>=-1e9"
    request = Request(
        name, where / "model.joblib", where / "train.csv", "y", task, gates=(gate,), promote=True
    )
    outcome = run(request, registry)
    assert outcome.status == "registered", outcome.report
    assert outcome.version is not None
    return registry.metadata(name, outcome.version)


def model_rows(meta: ModelMetadata, records: list[Any]) -> Any:
    """What the server calls the model with for ``records`` (JSON values as a client sends)."""
    return model_input(InputContract(meta.features, meta.input_format).records(records, "rows"))


def records_of(frame: pd.DataFrame) -> list[list[Any]]:
    """A frame's rows as the JSON values a client sends (missing as null)."""
    return [[_native(v) for v in row] for row in frame.astype(object).values.tolist()]


def _native(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def _head_tail(estimator: Any) -> tuple[Any, Any]:
    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        return estimator[:-1], estimator.steps[-1][1]
    return None, estimator


def transformed(estimator: Any, X: Any) -> Matrix:
    head, _ = _head_tail(estimator)
    out = X if head is None else head.transform(X)
    out = out.toarray() if sparse.issparse(out) else out
    return np.asarray(out, dtype=np.float64)


def _one_hot(transformer: Any) -> OneHotEncoder | None:
    if isinstance(transformer, OneHotEncoder):
        return transformer
    if isinstance(transformer, Pipeline) and isinstance(transformer.steps[-1][1], OneHotEncoder):
        return transformer.steps[-1][1]
    return None


def owned_columns(estimator: Any, n_features: int) -> list[list[int]]:
    """Per original feature, the transformed columns made from it."""
    head, _ = _head_tail(estimator)
    columns = head.steps[-1][1] if isinstance(head, Pipeline) else head
    if not isinstance(columns, ColumnTransformer):  # one-to-one transforms (a scaler) or none
        return [[j] for j in range(n_features)]
    owned: list[list[int]] = [[] for _ in range(n_features)]
    for name, transformer, inputs in columns.transformers_:
        if transformer == "drop":
            continue
        out = columns.output_indices_[name]
        encoder = _one_hot(transformer)
        widths = [len(c) for c in encoder.categories_] if encoder else [1] * len(inputs)
        start = out.start
        for j, width in zip(columns._transformer_to_input_indices[name], widths, strict=True):
            owned[j].extend(range(start, start + width))
            start += width
    return owned


def fold(values: Matrix, owned: list[list[int]]) -> Matrix:
    """(n, columns, outputs) summed per feature: (n, features, outputs)."""
    return np.stack([values[:, cols, :].sum(axis=1) for cols in owned], axis=1)


def linear_contributions(estimator: Any, X: Any, background: Any, n_features: int) -> Matrix:
    _, final = _head_tail(estimator)
    coef = np.atleast_2d(np.asarray(final.coef_, dtype=np.float64))
    mean = transformed(estimator, background).mean(axis=0)
    per_column = (transformed(estimator, X) - mean)[:, :, None] * coef.T[None, :, :]
    return fold(per_column, owned_columns(estimator, n_features))


def shap_contributions(
    estimator: Any, X: Any, n_features: int, explainer: Any = None
) -> tuple[Matrix, Matrix]:
    """(shap's expected value per output, its values per feature and output); ``explainer``:
    ``tree_explainer(estimator)`` made once for many calls."""
    explainer = explainer or tree_explainer(estimator)
    values = np.asarray(explainer.shap_values(transformed(estimator, X)))
    if values.ndim == 2:
        values = values[:, :, None]
    base = np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)
    return base, fold(values, owned_columns(estimator, n_features))


def tree_explainer(estimator: Any) -> Any:
    """shap's own ``TreeExplainer`` of the final step, as a user would make it."""
    import shap

    return shap.TreeExplainer(_head_tail(estimator)[1])


def own_output(estimator: Any, output: str, X: Any) -> Matrix:
    """The model's output in-process, in the space an answer states."""
    method = {"probability": "predict_proba", "margin": "decision_function"}.get(output, "predict")
    values = np.asarray(getattr(estimator, method)(X), dtype=np.float64)
    return values.reshape(len(values), -1)
