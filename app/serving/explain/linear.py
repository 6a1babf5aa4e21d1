"""Exact contributions of a linear model: ``coef * (x - mean of the background)``, per column.

A linear classifier is explained in margin space (its ``decision_function``, one column per
class, or one for the positive class of a binary model): a probability is a sigmoid or softmax
of the margins, not a sum of terms, so no additive split of it is exact. A regressor's output
is its prediction. The base value is the model's output at the background's mean,
``coef @ mean + intercept``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from app.serving.explain.result import Matrix, OutputSpace

# Estimators whose output is X @ coef_.T + intercept_ (a classifier's decision_function, a
# regressor's predict). Generalized linear models predict through a link function: not these.
_LINEAR_MODULES = ("sklearn.linear_model.", "sklearn.svm._classes", "sklearn.discriminant_analysis")
_LINEAR_NAMES = frozenset({"LinearSVC", "LinearSVR", "LinearDiscriminantAnalysis"})
_LINK_MODULE = "sklearn.linear_model._glm"


def is_linear(estimator: Any, classifier: bool) -> bool:
    module, name = type(estimator).__module__, type(estimator).__name__
    if not module.startswith(_LINEAR_MODULES) or module.startswith(_LINK_MODULE):
        return False
    if module.startswith(("sklearn.svm", "sklearn.discriminant_analysis")) and (
        name not in _LINEAR_NAMES
    ):
        return False
    if not (hasattr(estimator, "coef_") and hasattr(estimator, "intercept_")):
        return False
    return hasattr(estimator, "decision_function") if classifier else True


class LinearContributions:
    """Contributions of each transformed column of a fitted linear model."""

    def __init__(self, estimator: Any, classifier: bool, background: Matrix) -> None:
        coef = estimator.coef_
        coef = coef.toarray() if sparse.issparse(coef) else np.asarray(coef, dtype=np.float64)
        self.coef: Matrix = np.atleast_2d(coef)  # (outputs, columns)
        outputs = self.coef.shape[0]
        intercept = np.asarray(estimator.intercept_, dtype=np.float64).reshape(-1)
        self.intercept: Matrix = np.broadcast_to(intercept, (outputs,)).copy()
        self.mean: Matrix = background.mean(axis=0)
        self.output: OutputSpace = "margin" if classifier else "value"

    def base(self) -> Matrix:
        return self.coef @ self.mean + self.intercept

    def __call__(self, columns: Matrix) -> tuple[Matrix, Matrix]:
        """(base (outputs,), contributions (n, columns, outputs)) for transformed rows."""
        centred = columns - self.mean[None, :]
        return self.base(), centred[:, :, None] * self.coef.T[None, :, :]
