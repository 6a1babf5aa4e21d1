"""`modelserve train` on a mixed CSV (strings, booleans, integers, empty cells), then
`modelserve predict` on a CSV of such rows: typed end to end, exact in-process answers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from app.registry.store import Registry
from tests.helpers.mixed import TARGET, churn_frame
from tests.helpers.support import run_cli

pytestmark = pytest.mark.slow  # the modelserve CLI as subprocesses

SPEC = {
    "name": "churn",
    "task": "classification",
    "data": {"source": "churn.csv", "target": TARGET, "nullable": ["tenure_months"]},
    "validation": {"max_missing_share": 0.2},
    "preprocessing": [
        {
            "class": "sklearn.preprocessing.OrdinalEncoder",
            "params": {
                "handle_unknown": "use_encoded_value",
                "unknown_value": -1,
                "encoded_missing_value": -1,
            },
        }
    ],
    "estimator": {
        "class": "sklearn.ensemble.HistGradientBoostingClassifier",
        "params": {"max_iter": 30},
    },
    "gate": {"thresholds": {"accuracy": 0.7}},
}


def test_train_and_predict_a_mixed_csv(tmp_path: Path) -> None:
    churn_frame(800).to_csv(tmp_path / "churn.csv", index=False)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    registry = tmp_path / "reg"
    done = run_cli("train", str(tmp_path / "spec.yaml"), "--registry", str(registry))
    assert done.returncode == 0, done.stdout + done.stderr

    meta = Registry(registry).metadata("churn", "1")
    kinds = {f.name: (f.kind, f.nullable) for f in meta.features}
    assert meta.input_format == "frame"
    assert kinds["plan"] == ("string", False) and kinds["autopay"] == ("boolean", False)
    assert kinds["seats"] == ("integer", False) and kinds["tenure_months"] == ("number", True)
    assert set(meta.reference.categorical) == {"plan", "country"}

    rows = churn_frame(20, seed=7).drop(columns=TARGET)
    rows.loc[3, "tenure_months"] = float("nan")  # an empty cell in the CSV
    rows.to_csv(tmp_path / "rows.csv", index=False)
    done = run_cli(
        "predict", "churn", "--alias", "1", "--input", str(tmp_path / "rows.csv"),
        "--registry", str(registry),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    model = Registry(registry).load("churn", "1").estimator
    expected = pd.read_csv(tmp_path / "rows.csv")
    assert [line["prediction"] for line in lines] == model.predict(expected).tolist()
    assert [line["probabilities"] for line in lines] == model.predict_proba(expected).tolist()
