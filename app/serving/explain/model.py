"""One version's explainer: its pipeline's transforms, the method on its final step, the
column map back to the original features, and the model's own output to check against.

``explain(X)`` takes what the model is called with (``app.serving.contract.model_input``) and
runs in the caller's thread: the server's explain thread, or any off-path consumer (a sampled
attribution counter) holding the same object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.pipeline import Pipeline

from app.serving.contract import ModelInput
from app.serving.explain.columns import ColumnMap
from app.serving.explain.result import (
    Explanation,
    Matrix,
    Method,
    NotExplainableError,
    OutputSpace,
    sum_gap,
)

Contributions = Callable[[Matrix], tuple[Matrix, Matrix]]
Answered = tuple[Any, Any]  # the served scorer's predictions, and probabilities or None
ColumnsOf = Callable[[ModelInput], Matrix]


def dense(values: Any) -> Matrix:
    """A transform's output as a float64 matrix (sparse one-hot output made dense)."""
    if sparse.issparse(values):
        values = values.toarray()
    return np.asarray(values, dtype=np.float64)


def split(estimator: Any) -> tuple[ColumnsOf | None, Any]:
    """(the transforms before the final step, or None; the final step)."""
    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        head = estimator[:-1]
        return (lambda X: dense(head.transform(X))), estimator.steps[-1][1]
    return None, estimator


def own_output(estimator: Any, output: OutputSpace, X: ModelInput) -> Matrix:
    """The model's output in ``output`` space, (n, outputs)."""
    if output == "probability":
        values = estimator.predict_proba(X)
    elif output == "margin":
        values = estimator.decision_function(X)
    else:
        values = estimator.predict(X)
    return as_outputs(values)


def as_outputs(values: Any) -> Matrix:
    """A model's output as float64, (n, outputs)."""
    matrix: Matrix = np.asarray(values, dtype=np.float64)
    return matrix.reshape(len(matrix), -1)


def output_names(output: OutputSpace, classes: list[Any] | None, outputs: int) -> list[Any]:
    """What each output column is: the classes, the positive class, or the value."""
    if output == "value" or not classes:
        return ["value"] if outputs == 1 else [f"value[{k}]" for k in range(outputs)]
    if outputs == 1 and len(classes) == 2:
        return [classes[1]]  # a binary model's one margin is the positive class's
    return list(classes)


@dataclass(frozen=True)
class ModelExplainer:
    estimator: Any
    columns_of: ColumnsOf
    contributions: Contributions
    column_map: ColumnMap
    method: Method
    output: OutputSpace
    features: list[str]
    classes: list[Any] | None

    def explain(self, X: ModelInput, answered: Answered | None = None) -> Explanation:
        """The rows' explanation, checked: NotExplainableError names the first row that fails.

        ``answered``: the served scorer's predictions and probabilities for these rows, the
        model's own bits, used instead of calling the estimator again: a forest's own
        ``predict_proba`` walks joblib's dispatch once per tree, 25 ms a call for 200 trees
        with the GIL held, a hundred times TreeSHAP's work for one row."""
        base, per_column = self.contributions(self.columns_of(X))
        orphan = self.column_map.orphan_row(per_column)
        if orphan is not None:
            raise NotExplainableError(
                f"row {orphan} moves a column of the transformed input that the version's "
                "own rows never moved, so it belongs to no feature"
            )
        predictions, values = self._own(X, answered)
        explanation = Explanation(
            self.method,
            self.output,
            output_names(self.output, self.classes, values.shape[1]),
            self.features,
            predictions,
            values,
            base,
            self.column_map.fold(per_column),
        )
        if explanation.contributions.shape != (len(values), len(self.features), len(base)):
            raise NotExplainableError(
                f"contributions of shape {explanation.contributions.shape} for "
                f"{len(values)} rows, {len(self.features)} features and {values.shape[1]} outputs"
            )
        gap = sum_gap(explanation)
        if gap is not None:
            raise NotExplainableError(f"its contributions do not add up: {gap}")
        return explanation

    def _own(self, X: ModelInput, answered: Answered | None) -> tuple[Matrix, Matrix]:
        """The predictions, and the output the contributions must add up to."""
        if answered is not None:
            predictions, proba = answered
            if self.output == "probability" and proba is not None:
                return np.asarray(predictions), as_outputs(proba)
            if self.output == "value":
                return np.asarray(predictions), as_outputs(predictions)
            return np.asarray(predictions), own_output(self.estimator, self.output, X)
        return np.asarray(self.estimator.predict(X)), own_output(self.estimator, self.output, X)
