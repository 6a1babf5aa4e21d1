"""The real ``modelserve`` CLI: list the registry, score CSV/JSON files like the server would."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from app.registry.store import Registry
from tests.helpers.support import run_cli

pytestmark = pytest.mark.slow  # the modelserve CLI as subprocesses

MODEL = "breast-cancer"


def _rows() -> tuple[list[str], np.ndarray]:
    data = load_breast_cancer()
    return [str(n) for n in data.feature_names], np.asarray(data.data[::50], dtype=np.float64)


def _json_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_models_lists_versions_and_aliases(registry_path: Path) -> None:
    done = run_cli("models", "--registry", str(registry_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{MODEL}\tversions: 1\taliases: production=1"]


def test_predict_csv_and_json_equal_in_process(registry_path: Path, tmp_path: Path) -> None:
    names, X = _rows()
    estimator = Registry(registry_path).load(MODEL, "1").estimator
    expected_pred = estimator.predict(X).tolist()
    expected_proba = estimator.predict_proba(X).tolist()

    rows_csv = tmp_path / "rows.csv"
    with rows_csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*reversed(names), "target"])  # column order and extras don't matter
        writer.writerows([[*reversed([repr(v) for v in row]), "?"] for row in X.tolist()])
    rows_obj = tmp_path / "rows-object.json"
    rows_obj.write_text(
        json.dumps({"instances": [dict(zip(names, r, strict=True)) for r in X.tolist()]})
    )

    for path in (rows_csv, rows_obj):
        done = run_cli("predict", MODEL, "--input", str(path), "--registry", str(registry_path))
        assert done.returncode == 0, done.stderr
        lines = _json_lines(done.stdout)
        assert [line["prediction"] for line in lines] == expected_pred, path.name
        assert [line["probabilities"] for line in lines] == expected_proba, path.name
        assert {(line["model"], line["version"]) for line in lines} == {(MODEL, "1")}


def test_predict_bad_file_names_the_field(registry_path: Path, tmp_path: Path) -> None:
    names, X = _rows()
    row = X[0].tolist()
    bad_csv = tmp_path / "bad.csv"
    cells = [repr(v) for v in row]
    cells[2] = "n/a"
    bad_csv.write_text(",".join(f'"{n}"' for n in names) + "\n" + ",".join(cells) + "\n")
    broken_json = tmp_path / "broken.json"
    broken_json.write_text('{"instances": [[1, 2')

    cases = [
        (bad_csv, f"instances[0].{names[2]}", "must be a number"),
        (broken_json, "body", "not valid JSON"),
    ]
    for path, field, reason in cases:
        done = run_cli("predict", MODEL, "--input", str(path), "--registry", str(registry_path))
        assert done.returncode != 0, path.name
        assert field in done.stderr and reason in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""
