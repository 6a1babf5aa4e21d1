"""TreeSHAP for forests and boosted trees, through shap's ``TreeExplainer`` (the ``explain``
extra), in the output space shap computes exactly for each model.

shap's default for scikit-learn trees is path-dependent TreeSHAP: exact Shapley values of the
trees as fitted, from each node's training sample counts, with no background data. A forest or
a single tree of a classifier averages class proportions, so its contributions are in
probability space, per class; gradient-boosted classifiers sum margins (log-odds), so theirs
are in margin space (the ``decision_function``); regressors in their predicted value. What
shap cannot do it says (multiclass ``GradientBoostingClassifier``, string categories), and
what it does inexactly (``HistGradientBoosting``'s categorical splits) fails the sum check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.serving.explain.result import Matrix, NotExplainableError, OutputSpace

_TREE_MODULES = ("sklearn.tree.", "sklearn.ensemble._forest", "sklearn.ensemble._gb")
_TREE_NAMES = frozenset(
    {
        "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier",
        "ExtraTreeRegressor", "RandomForestClassifier", "RandomForestRegressor",
        "ExtraTreesClassifier", "ExtraTreesRegressor", "GradientBoostingClassifier",
        "GradientBoostingRegressor", "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
    }
)  # fmt: skip
_SPACES: dict[str, OutputSpace] = {
    "probability": "probability",
    "log_odds": "margin",
    "raw_value": "value",
}
EXTRA = "pip install 'modelserve[explain]'"


def is_tree(estimator: Any) -> bool:
    kind = type(estimator)
    module = kind.__module__
    in_sklearn = module.startswith(_TREE_MODULES) or module.startswith("sklearn.ensemble._hist")
    return in_sklearn and kind.__name__ in _TREE_NAMES


class TreeContributions:
    """shap's TreeExplainer over a fitted tree model, made once per version."""

    def __init__(self, estimator: Any) -> None:
        try:
            import shap  # here: numba and llvmlite load only when a tree is explained
        except ImportError:
            raise NotExplainableError(f"TreeSHAP needs the shap package: {EXTRA}") from None
        try:
            self._explainer = shap.TreeExplainer(estimator)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise NotExplainableError(
                f"shap cannot explain it: {type(exc).__name__}: {first}"
            ) from None
        tree_output = str(self._explainer.model.tree_output)
        if tree_output not in _SPACES:
            raise NotExplainableError(
                f"shap explains it in its {tree_output!r} space, not the model's"
            )
        self.output: OutputSpace = _SPACES[tree_output]

    def __call__(self, columns: Matrix) -> tuple[Matrix, Matrix]:
        """(base (outputs,), contributions (n, columns, outputs)), shap's own values."""
        values = np.asarray(self._explainer.shap_values(columns, check_additivity=False))
        if values.ndim == 2:
            values = values[:, :, None]
        base = np.asarray(self._explainer.expected_value, dtype=np.float64).reshape(-1)
        return base, values
