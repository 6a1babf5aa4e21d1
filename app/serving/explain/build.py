"""A version's explainer, chosen by its final estimator and checked on its own rows.

Linear models (``linear``) are explained against the version's background sample (its mean);
a version registered before backgrounds were stored uses its numeric reference means when
every feature is a number, and is refused otherwise. Tree models go to TreeSHAP (``trees``).
Anything else has no exact, fast method here and is refused, never approximated. Last, the
explainer explains the background (or the example) and must pass the sum check there, or the
version is refused with the first row that failed.
"""

from __future__ import annotations

from typing import Any

from app.registry.metadata import ModelMetadata, Value
from app.serving.contract import InputContract, model_input
from app.serving.explain import columns
from app.serving.explain.linear import LinearContributions, is_linear
from app.serving.explain.model import ModelExplainer, dense, split
from app.serving.explain.result import Matrix, Method, NotExplainableError
from app.serving.explain.trees import TreeContributions, is_tree
from app.serving.typed import default_row

COVERED = (
    "linear models (logistic and linear regression, ridge, lasso, elastic net, linear SVMs, "
    "SGD) and trees (decision trees, random forests, extra trees, gradient boosting, "
    "histogram gradient boosting), alone or after a pipeline's transforms"
)


def _rows(meta: ModelMetadata) -> list[list[Value]]:
    """The version's own rows: its background sample, or its example row."""
    if meta.background:
        return [list(row) for row in meta.background]
    return [list(meta.example or default_row(meta.features))]


def _background(meta: ModelMetadata) -> list[list[Value]]:
    if meta.background:
        return [list(row) for row in meta.background]
    means = [meta.reference.features.get(f.name) for f in meta.features]
    if all(f.kind == "number" for f in meta.features) and all(m is not None for m in means):
        return [[m.mean for m in means if m is not None]]  # the training means, as one row
    raise NotExplainableError(
        f"version {meta.version} stores no background sample (registered before modelserve "
        "kept one) and not every feature is a number with a training mean: train or register "
        "it again to explain it"
    )


def build(estimator: Any, meta: ModelMetadata, contract: InputContract) -> ModelExplainer:
    """The version's checked explainer, or NotExplainableError saying why there is none."""
    classifier = meta.task == "classification"
    head, final = split(estimator)

    def columns_of(X: Any) -> Matrix:
        if head is not None:
            return head(X)
        try:
            return dense(X)
        except (ValueError, TypeError):
            raise NotExplainableError(
                "it takes columns that are not numbers (strings, categories) itself; the "
                "explainers need the numbers a pipeline's encoders make"
            ) from None

    def given(rows: list[list[Value]]) -> Any:
        return model_input(contract.records([list(r) for r in rows], "background"))

    def records(rows: list[list[Value]]) -> Matrix:
        return columns_of(given(rows))

    method: LinearContributions | TreeContributions
    name: Method
    if is_linear(final, classifier):
        method, name = LinearContributions(final, classifier, records(_background(meta))), "linear"
    elif is_tree(final):
        method, name = TreeContributions(final), "tree_shap"
    else:
        raise NotExplainableError(
            f"{type(final).__name__} has no exact explainer; :explain covers {COVERED}"
        )
    rows = _rows(meta)
    column_map = (
        columns.identity() if head is None else columns.trace(records, contract.features, rows)
    )
    explainer = ModelExplainer(
        estimator, columns_of, method, column_map, name, method.output, meta.feature_names,
        meta.classes,
    )  # fmt: skip
    try:
        explainer.explain(given(rows))
    except NotExplainableError as exc:
        raise NotExplainableError(f"{exc} (checked on the version's own rows)") from None
    return explainer
