"""The off-path scorer's writer of a shadow's answers: small commits, refusals counted per row,
and labels stored before the answers judged as they are written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
import pytest

from app.config import Settings
from app.monitoring.records import FeedbackRow
from app.monitoring.shadowlog import RowsNotWrittenError, ShadowWriter
from app.results import InferenceResult
from tests.helpers.lifecycle import NAME


def _answers(n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids = [f"p{i}" for i in range(n)]
    predictions = np.arange(n) % 2
    return ids, predictions, np.stack([1 - predictions / 2, predictions / 2], axis=1)


def test_rows_commit_in_small_batches_and_refusals_are_counted_per_row(
    tmp_path: Path, registry_path: Path
) -> None:
    """At most ROWS_PER_COMMIT rows a commit (it runs on idle CPU and must not hold the write
    lock long); a refused batch costs its rows, not the others."""
    writer = ShadowWriter(Settings(registry=registry_path, prediction_log=tmp_path / "log.db"))
    commits: list[int] = []
    real = writer.backend.write_shadow

    def write_shadow(rows: Sequence[tuple[str, float, str, str, str]]) -> list[tuple[str, str]]:
        commits.append(len(rows))
        if len(commits) == 2:
            raise OSError("disk full")
        return real(rows)

    writer.backend.write_shadow = write_shadow  # type: ignore[method-assign]
    n = 2 * ShadowWriter.ROWS_PER_COMMIT + 5
    ids, predictions, probabilities = _answers(n)
    # Labels for the first row of each commit, stored before: the refused one's is not judged.
    first = ids[:: ShadowWriter.ROWS_PER_COMMIT]
    writer.backend.add_feedback([FeedbackRow(pid, 1.0, "0", None, None) for pid in first])
    with pytest.raises(RowsNotWrittenError) as refused:
        writer.write(InferenceResult(NAME, "1", predictions, probabilities, ids))
    assert refused.value.rows == ShadowWriter.ROWS_PER_COMMIT
    assert refused.value.judged == {"correct": 2}  # p0 and p128 predicted 0
    assert commits == [ShadowWriter.ROWS_PER_COMMIT, ShadowWriter.ROWS_PER_COMMIT, 5]
    labelled = [FeedbackRow(pid, 1.0, "1", None, None) for pid in ids if pid not in first]
    kept = {s.id: orjson.loads(s.output) for s in writer.backend.add_feedback(labelled)}
    assert len(kept) == n - ShadowWriter.ROWS_PER_COMMIT - 2
    assert kept["p1"] == {"prediction": 1, "probabilities": [0.5, 0.5]}
    writer.close()


def test_labels_stored_first_are_judged_against_the_answers_written(
    tmp_path: Path, registry_path: Path
) -> None:
    writer = ShadowWriter(Settings(registry=registry_path, prediction_log=tmp_path / "log.db"))
    ids, predictions, probabilities = _answers(10)
    labels = [0, 0, 0, 1, 1, 1]  # for p0..p5; p6..p9 have none yet
    writer.backend.add_feedback(
        [
            FeedbackRow(pid, 1.0, orjson.dumps(y).decode(), None, None)
            for pid, y in zip(ids[:6], labels, strict=True)
        ]
    )
    judged = writer.write(InferenceResult(NAME, "1", predictions, probabilities, ids))
    # p0..p5 predicted 0,1,0,1,0,1 against 0,0,0,1,1,1: four right, two wrong.
    assert judged == {"correct": 4, "incorrect": 2}
    # A label outside the version's classes is logged and skipped, not raised.
    writer.backend.add_feedback([FeedbackRow("q", 1.0, '"maybe"', None, None)])
    assert writer.write(InferenceResult(NAME, "1", np.array([1]), None, ["q"])) == {}
    writer.close()
