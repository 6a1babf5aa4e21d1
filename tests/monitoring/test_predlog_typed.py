"""The prediction log stores typed inputs as sent: strings, integers, booleans, null."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from app.monitoring.predlog import PredictionLog
from app.monitoring.sqlite import SqliteBackend
from app.results import InferenceResult


def test_typed_rows_are_logged_as_json_values(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    plog = PredictionLog(SqliteBackend(path), flush_interval_s=0.05)
    plog.start()
    frame = pd.DataFrame(
        {
            "plan": np.asarray(["pro", np.nan], dtype=object),
            "seats": np.asarray([3, 12], dtype=np.int64),
            "autopay": np.asarray([True, False]),
            "tenure": np.asarray([np.nan, 7.5]),
        }
    )
    labels = np.asarray(["yes", "no"], dtype=object)
    proba = np.asarray([[0.1, 0.9], [0.8, 0.2]])
    answers = InferenceResult("churn", "1", labels, proba, ["a", "b"])
    plog.submit(answers, frame)
    assert plog.flush(5.0)
    plog.stop()
    with sqlite3.connect(path) as conn:
        stored = dict(conn.execute("SELECT id, inputs FROM predictions").fetchall())
        outputs = dict(conn.execute("SELECT id, output FROM predictions").fetchall())
    assert stored["a"] == '["pro",3,true,null]'  # the text: 3 stays an integer, not 3.0
    assert stored["b"] == "[null,12,false,7.5]"
    assert orjson.loads(outputs["a"]) == {"prediction": "yes", "probabilities": [0.1, 0.9]}
