"""Whether merging requests into one model call leaves every answer bit for bit the same.

Trees and forests score each row on its own, but many models do not: a linear model, an SVM,
an MLP or k-NN computes a batch with matrix products whose summation order depends on the
batch shape, so a row scored among 64 can differ in the last bits from the same row scored
alone. modelserve promises what the model returns in-process for the request as sent, so at
load each version is probed: distinct rows scored one by one and merged (alone, then repeated
into a longer call); only if every answer is identical, and no part of the model is known to
compute a call's rows together (``app.serving.rowwise``: the probe's rows can miss where such a
part's bits move), may the batcher merge requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from app.registry.metadata import FeatureSpec, ModelMetadata, Value
from app.serving.contract import InputContract, Rows, model_input
from app.serving.onepass import COMPILED, Scorer, compile_scorer
from app.serving.prefixprobe import compiled_transform
from app.serving.rowwise import rows_together
from app.serving.typed import default_row

log = logging.getLogger(__name__)

PROBE_ROWS = 64  # last-bit differences touch some rows only: probe enough to see them
MERGED_COPIES = 4
MIN_PROBED = 16
PROBE_BUDGET_S = 2.0
Score = Callable[[Rows], tuple[Any, Any]]


def _probe_value(
    spec: FeatureSpec, base: Value, meta: ModelMetadata, rng: np.random.Generator
) -> Value:
    if spec.kind == "string":
        return str(rng.choice(spec.categories)) if spec.categories else base
    if spec.kind == "boolean":
        return bool(rng.integers(2))
    if spec.kind == "integer":
        start = base if isinstance(base, int) and not isinstance(base, bool) else 0
        return start + int(rng.integers(-5, 6))
    reference = meta.reference.features.get(spec.name)
    if reference is not None and reference.max > reference.min:
        return float(rng.uniform(reference.min, reference.max))
    number = float(base) if isinstance(base, int | float) and not isinstance(base, bool) else 0.0
    return number * (1.0 + 0.2 * float(rng.standard_normal())) + float(rng.standard_normal())


def probe_records(meta: ModelMetadata) -> list[list[Value]]:
    """Distinct rows every feature accepts, spread over the training reference (seeded)."""
    example = list(meta.example) or default_row(meta.features)
    rng = np.random.default_rng(0)
    return [
        [_probe_value(spec, example[j], meta, rng) for j, spec in enumerate(meta.features)]
        for _ in range(PROBE_ROWS)
    ]


def _rows_of(scored: tuple[Any, Any]) -> list[str]:
    predictions, probabilities = scored
    preds = predictions.tolist()
    probas = probabilities.tolist() if probabilities is not None else [None] * len(preds)
    return [repr((p, q)) for p, q in zip(preds, probas, strict=True)]


def merges_exactly(
    score: Score,
    contract: InputContract,
    records: Sequence[list[Any]],
    budget_s: float = PROBE_BUDGET_S,
) -> bool:
    """True if scoring the rows merged gives each row exactly what scoring it alone gives.

    A slow model gets fewer rows probed (the budget bounds the load time); with fewer than
    ``MIN_PROBED`` rows the answer is no: unproven merges are never made.
    """
    deadline = time.monotonic() + budget_s
    try:
        probed: list[list[Any]] = []
        alone: list[str] = []
        for record in records:
            alone.append(_rows_of(score(_input(contract, [list(record)])))[0])
            probed.append(list(record))
            if time.monotonic() > deadline:
                break
        if len(probed) < MIN_PROBED:
            return False
        # As the batcher merges: every request's rows into one model input.
        merged = _rows_of(score(_input(contract, probed * MERGED_COPIES)))
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
        rows = _input(contract, [list(r) for r in records])
        derived = score(rows)[0].tolist()
        own = estimator.predict(model_input(rows)).tolist()
    except Exception:
        return False
    return bool(repr(derived) == repr(own))


def answers_exactly(
    score: Score, estimator: Any, contract: InputContract, records: Sequence[list[Any]]
) -> bool:
    """True if the scorer returns the estimator's own ``predict`` and ``predict_proba`` on the
    probe rows, every float to the bit (a compiled tree ensemble, end to end: its pipeline's
    transforms and the input contract's rows included)."""
    try:
        rows = _input(contract, [list(r) for r in records])
        scored = score(rows)
        given = model_input(rows)
        own: tuple[Any, Any] = estimator.predict(given), None
        if scored[1] is not None:
            own = own[0], np.asarray(estimator.predict_proba(given), dtype=np.float64)
    except Exception:
        return False
    return _rows_of(scored) == _rows_of(own)  # repr: every float to the bit, -0.0 included


def settle_scorer(
    score: Scorer, estimator: Any, has_proba: bool, contract: InputContract, meta: ModelMetadata
) -> tuple[Scorer, bool]:
    """At load: the scorer a version serves with (its own methods where a one-pass scorer's
    predictions would differ, scikit-learn's where compiled trees would), and whether requests
    merged into one call keep every bit."""
    probe = probe_records(meta)
    refused = score.refused
    if score.name == COMPILED and not answers_exactly(score, estimator, contract, probe):
        refused = "its answers differ from scikit-learn's on the probe rows"
        score = compile_scorer(estimator, has_proba, fast=contract.numeric, trees=False)
    if refused:
        log.warning(
            "%s version %s: compiled trees not used, scikit-learn serves it: %s",
            meta.name,
            meta.version,
            refused,
        )
    if not derives_exactly(score, estimator, contract, probe):
        score = compile_scorer(estimator, has_proba, derive=False)
    score = _with_compiled_transform(score, estimator, contract, meta, probe)
    together = rows_together(estimator)
    merges = together is None and merges_exactly(score, contract, probe)
    if not merges:
        log.info(
            "%s version %s: each request gets its own model call: %s",
            meta.name,
            meta.version,
            f"{together} computes a call's rows together (matrix products)"
            if together
            else "batched rows differ from rows scored alone in the last bits",
        )
    return score, merges


def _with_compiled_transform(
    score: Scorer,
    estimator: Any,
    contract: InputContract,
    meta: ModelMetadata,
    probe: list[list[Value]],
) -> Scorer:
    """``score`` with the compiled transform where its probes prove it (logged once if not)."""
    example = list(meta.example) or default_row(meta.features)
    compiled, refused, wrong = compiled_transform(score, estimator, contract, example, probe)
    if compiled is not None and not answers_exactly(compiled, estimator, contract, probe):
        compiled, refused, wrong = None, "its answers differ from scikit-learn's", True
    if compiled is not None:
        return compiled
    if refused:  # a form it does not compile is common (info); a wrong one is not (warning)
        log.log(
            logging.WARNING if wrong else logging.INFO,
            "%s version %s: compiled transform not used, its steps' own transform serves it: %s",
            meta.name,
            meta.version,
            refused,
        )
    return score


def _input(contract: InputContract, records: list[list[Any]]) -> Rows:
    return contract.records(records, "probe")
