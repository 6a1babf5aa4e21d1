"""Whether merging requests into one model call leaves every answer bit for bit the same.

Trees and forests score each row on its own, but many models do not: a linear model, an SVM,
an MLP or k-NN computes a batch with matrix products whose summation order depends on the
batch shape, so a row scored among 64 can differ in the last bits from the same row scored
alone. modelserve promises what the model returns in-process for the request as sent, so at
load each version is probed: a few distinct rows scored one by one and merged (repeated to 64
rows); only if every answer is identical may the batcher merge requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from app.registry.metadata import FeatureSpec, ModelMetadata, Value
from app.serving.contract import InputContract, Rows
from app.serving.typed import default_row

PROBE_ROWS = 8
MERGED_COPIES = 8
Score = Callable[[Rows], tuple[Any, Any]]


def _probe_value(spec: FeatureSpec, base: Value, k: int, meta: ModelMetadata) -> Value:
    if spec.kind == "string":
        return spec.categories[k % len(spec.categories)] if spec.categories else base
    if spec.kind == "boolean":
        return bool(k % 2)
    if spec.kind == "integer":
        return (base if isinstance(base, int) and not isinstance(base, bool) else 0) + k
    reference = meta.reference.features.get(spec.name)
    if reference is not None and reference.edges:
        return reference.edges[k % len(reference.edges)]
    number = float(base) if isinstance(base, int | float) and not isinstance(base, bool) else 0.0
    return number * (1.0 + 0.37 * k / PROBE_ROWS) + 0.01 * k


def probe_records(meta: ModelMetadata) -> list[list[Value]]:
    """A few distinct rows every feature accepts, spread over the training reference."""
    example = list(meta.example) or default_row(meta.features)
    return [
        [_probe_value(spec, example[j], k, meta) for j, spec in enumerate(meta.features)]
        for k in range(PROBE_ROWS)
    ]


def _rows_of(scored: tuple[Any, Any]) -> list[str]:
    predictions, probabilities = scored
    preds = predictions.tolist()
    probas = probabilities.tolist() if probabilities is not None else [None] * len(preds)
    return [repr((p, q)) for p, q in zip(preds, probas, strict=True)]


def merges_exactly(score: Score, contract: InputContract, records: Sequence[list[Any]]) -> bool:
    """True if scoring the rows merged gives each row exactly what scoring it alone gives."""
    try:
        alone = [_rows_of(score(contract.records([list(r)], "probe")))[0] for r in records]
        merged = _rows_of(score(contract.records([list(r) for r in records] * MERGED_COPIES)))
    except Exception:
        return False  # cannot tell: never merge
    return merged == alone * MERGED_COPIES


def derives_exactly(
    score: Score, estimator: Any, contract: InputContract, records: Sequence[list[Any]]
) -> bool:
    """True if the scorer's predictions are the estimator's own ``predict`` on the probe rows.

    Predictions derived from ``predict_proba`` (one model pass) must equal ``predict``;
    should a release of scikit-learn decide differently, the version calls both instead.
    """
    try:
        rows = contract.records([list(r) for r in records], "probe")
        derived = score(rows)[0].tolist()
        own = estimator.predict(rows).tolist()
    except Exception:
        return False
    return bool(repr(derived) == repr(own))
