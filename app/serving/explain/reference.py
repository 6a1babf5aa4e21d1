"""What drives a version: each feature's share of the absolute contributions.

A feature's attribution is the sum of the absolute values of its contributions, over the rows
and over the model's outputs (a binary forest's two probabilities, a multiclass model's
classes); its share is that over the sum of every feature's. Training-time shares are computed
on the version's background rows (``reference_fields``, the registry's ``annotate`` hook the
CLI's ``train`` and ``register`` pass) and stored in ``metadata.json`` as
``attribution_reference``; production's come from sampled rows (``app.serving.attribution``)
and the recording rules, from the same sums.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from app.registry.metadata import ModelMetadata
from app.serving.contract import InputContract, model_input
from app.serving.explain import build as builder
from app.serving.explain.result import Explanation, Matrix, NotExplainableError

log = logging.getLogger(__name__)


def abs_sums(explanation: Explanation) -> Matrix:
    """(features,): each feature's absolute contributions, summed over rows and outputs."""
    sums: Matrix = np.abs(explanation.contributions).sum(axis=(0, 2))
    return sums


def shares(names: list[str], sums: Matrix) -> dict[str, float]:
    """Each feature's share of ``sums``' total; empty when there is nothing to share."""
    total = float(sums.sum())
    if not np.isfinite(total) or total <= 0:
        return {}
    return {name: float(value) / total for name, value in zip(names, sums.tolist(), strict=True)}


def reference_fields(estimator: Any, meta: ModelMetadata) -> dict[str, Any]:
    """``{"attribution_reference": {feature: share}}`` on the version's background rows, or
    ``{}`` when it has none or no exact explainer (said in one log line): never raises, a
    version registers either way."""
    if not meta.background:
        return {}
    contract = InputContract(meta.features, meta.input_format)
    try:
        explainer = builder.build(estimator, meta, contract)
        rows = contract.records([list(row) for row in meta.background], "background")
        explanation = explainer.explain(model_input(rows))
    except NotExplainableError as exc:
        log.info("%s version %s: no attribution reference: %s", meta.name, meta.version, exc)
        return {}
    except Exception as exc:  # a reference is a nicety; the version registers without one
        log.warning(
            "%s version %s: no attribution reference: %s: %s",
            meta.name, meta.version, type(exc).__name__, exc,
        )  # fmt: skip
        return {}
    found = shares(meta.feature_names, abs_sums(explanation))
    return {"attribution_reference": found} if found else {}


def annotated(estimator: Any, meta: ModelMetadata) -> ModelMetadata:
    """``meta`` with its attribution reference: the registry's ``annotate`` hook."""
    fields = reference_fields(estimator, meta)
    return meta.model_copy(update=fields) if fields else meta
