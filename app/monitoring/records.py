"""What the prediction log stores, and the interface every storage backend implements.

Three tables: ``predictions`` (id, time, model, version, inputs as a JSON list in feature order,
output as JSON ``{"prediction", "probabilities"}``), ``feedback`` (one row per prediction id;
its primary key is what makes a second label a conflict, in every worker and replica at once)
and ``shadow_predictions`` (a shadow version's output for a production prediction's row).
Their DDL and its versions are in ``app/monitoring/schema.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# (id, time, model, version, inputs JSON, output JSON)
PredictionRow = tuple[str, float, str, str, str, str]
# (production prediction id, time, model, shadow version, output JSON)
ShadowRow = tuple[str, float, str, str, str]


@dataclass(frozen=True)
class StoredPrediction:
    id: str
    time: float
    model: str
    version: str
    output: str  # JSON {"prediction": ..., "probabilities": [...] | null}


@dataclass(frozen=True)
class FeedbackRow:
    prediction_id: str
    time: float
    label: str  # JSON
    outcome: str | None  # correct | incorrect (classifiers)
    error: float | None  # absolute error (regressors)


class DuplicateFeedbackError(Exception):
    """A label was already stored for this prediction id."""

    def __init__(self, prediction_id: str) -> None:
        super().__init__(prediction_id)
        self.prediction_id = prediction_id


class LogBackendError(Exception):
    """The log store could not do it (unreachable, locked, timed out, not a database, at a
    schema version this code does not know, ...); callers answer 503.

    Every backend raises it, never its driver's own errors, so callers need not import the
    driver to catch them.
    """


class LogBackend(Protocol):
    def write_predictions(self, rows: Sequence[PredictionRow]) -> None: ...

    def get_predictions(self, ids: Sequence[str]) -> dict[str, StoredPrediction]: ...

    def write_shadow(self, rows: Sequence[ShadowRow]) -> list[tuple[str, str]]:
        """Insert the rows (a row already stored is kept as it was); return the labels
        already stored for the ids of the rows inserted, as (prediction id, label JSON), read
        in the same write transaction as the insert."""

    def has_feedback(self, ids: Sequence[str]) -> set[str]: ...

    def add_feedback(self, rows: Sequence[FeedbackRow]) -> list[StoredPrediction]:
        """Store all rows durably in one transaction, or none (DuplicateFeedbackError); return
        the shadow outputs already logged for their ids (``id`` is the production id), read in
        that transaction.

        The two writes take turns (one write transaction at a time for these tables), so of a
        label and a shadow's answer for the same row, whichever comes second meets the first:
        each pair is judged exactly once, in whatever order they arrive.
        """

    def purge(self, before: float) -> int: ...

    def close(self) -> None: ...
