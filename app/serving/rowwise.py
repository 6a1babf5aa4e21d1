"""Which part of a fitted model, if any, computes rows together (matrix products).

The load-time probe (``app.serving.exactness.merges_exactly``) scores its own rows alone and
merged, and merges requests only if every bit agrees. That shows a difference only where its
rows reach one: a stacking classifier whose final logistic regression reads a forest's and a
naive Bayes' probabilities gave the same bits on all 64 probe rows (spread over the training
ranges, where those probabilities saturate at 0 and 1) and other last bits merged on 8 of 200
real rows. So a model holding a part whose answers depend on the call's other rows by
construction (BLAS products, distances to training rows, kernels) is never merged, wherever the
part sits: a pipeline step, a column transformer's, an ensemble's member, a final estimator, a
boosting model's ``init``. Other models, a user's own classes included, are left to the probe.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

# scikit-learn's packages whose estimators and transformers multiply matrices or compute
# distances over a whole call: a row's last bits depend on the call's shape.
TOGETHER_PACKAGES = (
    "sklearn.cluster",
    "sklearn.covariance",
    "sklearn.cross_decomposition",
    "sklearn.decomposition",
    "sklearn.discriminant_analysis",
    "sklearn.gaussian_process",
    "sklearn.kernel_approximation",
    "sklearn.kernel_ridge",
    "sklearn.linear_model",
    "sklearn.manifold",
    "sklearn.mixture",
    "sklearn.naive_bayes",
    "sklearn.neighbors",
    "sklearn.neural_network",
    "sklearn.random_projection",
    "sklearn.semi_supervised",
    "sklearn.svm",
)
# Classes of those packages that work on each row alone (elementwise, then a sum per row).
ROWWISE_CLASSES = frozenset({"sklearn.naive_bayes.GaussianNB", "sklearn.naive_bayes.CategoricalNB"})
# Classes of other packages that compute over the call (k-NN imputation, kernel centring).
TOGETHER_CLASSES = frozenset({"sklearn.impute.KNNImputer", "sklearn.preprocessing.KernelCenterer"})
MAX_PARTS = 200_000  # a forest of thousands of trees is still looked through in milliseconds


def rows_together(model: Any) -> str | None:
    """Where the first part of ``model`` that computes rows together sits (``model`` itself,
    ``model.steps[1]``, ``model.final_estimator_``, ...) and its class; None if no known one."""
    seen: set[int] = set()
    pending: list[tuple[str, Any]] = [("model", model)]
    try:
        while pending and len(seen) < MAX_PARTS:
            where, part = pending.pop()
            if id(part) in seen:
                continue
            seen.add(id(part))
            if _computes_together(type(part)):
                return f"{where} ({type(part).__name__})"
            pending.extend(_parts(where, part))
    except Exception as exc:  # an attribute that raises when looked at: cannot tell, no merge
        return f"model (its parts could not be looked through: {type(exc).__name__})"
    return None


def _computes_together(cls: type) -> bool:
    module = cls.__module__
    if not module.startswith("sklearn."):
        return False
    public = f"{module.split('._')[0]}.{cls.__name__}"  # sklearn.naive_bayes.GaussianNB
    if public in ROWWISE_CLASSES:
        return False
    return public in TOGETHER_CLASSES or module.startswith(TOGETHER_PACKAGES)


def _parts(where: str, part: Any) -> Iterator[tuple[str, Any]]:
    """The objects ``part`` holds that may be or hold models: its attributes, the items of its
    lists, tuples, dicts and object arrays (a pipeline's steps, an ensemble's members)."""
    named: Iterable[tuple[object, Any]]
    if isinstance(part, list | tuple):
        named, form = enumerate(part), "{where}[{key}]"
    elif isinstance(part, dict):
        named, form = part.items(), "{where}[{key!r}]"
    elif isinstance(part, np.ndarray):
        named, form = enumerate(part.ravel() if part.dtype == object else ()), "{where}[{key}]"
    elif _may_hold_models(part):
        named, form = vars(part).items(), "{where}.{key}"
    else:
        return
    for key, value in named:
        if _worth_a_look(value):
            yield form.format(where=where, key=key), value


def _worth_a_look(value: Any) -> bool:
    """Whether ``value`` may be or hold a model: not a string, a number or a numeric array,
    which would spend the walk's bound (an encoder's 300,000 categories, each a string, used
    all of it in half a second and hid the logistic regression after them)."""
    if isinstance(value, np.ndarray):
        return bool(value.dtype == object)
    return isinstance(value, list | tuple | dict) or _may_hold_models(value)


def _may_hold_models(part: Any) -> bool:
    """A fitted model or a helper of one (an object of scikit-learn's, or any estimator)."""
    if not hasattr(part, "__dict__") or isinstance(part, type):
        return False
    cls = type(part)
    return cls.__module__.startswith("sklearn.") or hasattr(part, "get_params")
