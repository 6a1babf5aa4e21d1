"""``modelserve export`` then ``modelserve train`` with the exported rows, on both log backends.

The prediction log is a real SQLite file or a real PostgreSQL database, filled through the
backend the server writes with; export and train are the real CLI as subprocesses
(docs/guide/monitoring.md:
Estimated accuracy and retraining from production).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.monitoring.export import ExportError, Query, parse_since
from app.registry.store import Registry
from tests.helpers.export_log import LABELLED, ROWS, fill_log
from tests.helpers.lifecycle import DEFAULT_SPEC, NAME
from tests.helpers.postgres import fresh_database
from tests.helpers.support import run_cli

pytestmark = pytest.mark.slow  # the modelserve CLI as subprocesses


@pytest.fixture(params=["sqlite", "postgres"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/log.db"
        return
    with fresh_database(request.getfixturevalue("pg_server")) as url:
        yield url


def test_export_then_train_registers_a_challenger_compared_on_production_rows(
    log_url: str, registry_path: Path, tmp_path: Path
) -> None:
    registry = Registry(registry_path)
    fill_log(log_url, registry, tmp_path)
    env = {"MODELSERVE_DATABASE_URL": log_url}
    everything = tmp_path / "all.csv"
    result = run_cli(
        "export", NAME, "--registry", str(registry_path), "--output", str(everything), env=env
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"exported {ROWS} rows of {NAME} ({LABELLED} labelled)" in result.stdout
    with everything.open() as fh:
        rows = list(csv.DictReader(fh))
    features = registry.metadata(NAME, "1").feature_names
    assert list(rows[0]) == [*features, "target", "prediction", "version", "time"]
    assert len(rows) == ROWS and sum(r["target"] != "" for r in rows) == LABELLED
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)
    assert {r["version"] for r in rows} == {"1"}

    labelled = tmp_path / "prod.csv"
    result = run_cli(
        "export", NAME, "--registry", str(registry_path), "--since", "2h", "--version", "1",
        "--labeled-only", "--output", str(labelled), env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"exported {LABELLED} rows" in result.stdout
    none = run_cli(
        "export", NAME, "--registry", str(registry_path), "--since", "10m",
        "--output", str(tmp_path / "none.csv"), env=env,
    )  # fmt: skip
    assert "exported 0 rows" in none.stdout, none.stderr

    report = tmp_path / "report.json"
    trained = run_cli(
        "train", str(DEFAULT_SPEC), "--registry", str(registry_path), "--report", str(report),
        "--set", "split.cv_folds=0", "--set", f'data.append=["{labelled}"]',
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr + trained.stdout
    doc = json.loads(report.read_text())
    assert doc["status"] == "registered" and doc["version"] == "2"
    comparison = doc["comparison"]
    assert comparison["production_version"] == "1"
    held_out = int(comparison["compared_on"].split()[0])
    assert comparison["compared_on"].endswith("held-out production rows")
    assert 0.1 * LABELLED < held_out < 0.3 * LABELLED  # test_size 0.2 of the appended rows
    assert all(row["production"] is not None for row in comparison["rows"])
    meta = registry.metadata(NAME, "2")
    assert meta.rows["production"] == LABELLED  # type: ignore[attr-defined]
    assert meta.rows["train"] + meta.rows["test"] == 569 + LABELLED  # type: ignore[attr-defined]
    assert "held-out production rows" in trained.stdout or "production (v1)" in trained.stdout


def test_export_options_are_checked(tmp_path: Path, registry_path: Path) -> None:
    assert parse_since("7d", 1_000_000.0) == 1_000_000.0 - 7 * 86400
    assert parse_since(None, 0.0) is None
    with pytest.raises(ExportError, match="--since"):
        parse_since("seven days", 0.0)
    sql, params = Query(NAME, "2", 5.0, labeled_only=True).sql("%s")
    assert params == [NAME, "2", 5.0] and "f.label IS NOT NULL" in sql
    missing = run_cli(
        "export", NAME, "--registry", str(registry_path), "--output", str(tmp_path / "x.csv"),
        env={"MODELSERVE_DATABASE_URL": f"sqlite:///{tmp_path}/absent.db"},
    )  # fmt: skip
    assert missing.returncode == 1 and "no prediction log" in missing.stderr
    wrong = run_cli(
        "export", NAME, "--registry", str(registry_path), "--output", str(tmp_path / "x.txt"),
        env={"MODELSERVE_DATABASE_URL": f"sqlite:///{tmp_path}/absent.db"},
    )  # fmt: skip
    assert wrong.returncode == 1


def test_parquet_export_round_trips_into_train(tmp_path: Path, registry_path: Path) -> None:
    """The Parquet file has the CSV's columns and rows, and data.append reads it."""
    import pandas as pd

    registry = Registry(registry_path)
    log_url = f"sqlite:///{tmp_path}/log.db"
    fill_log(log_url, registry, tmp_path)
    env = {"MODELSERVE_DATABASE_URL": log_url}
    paths = {suffix: tmp_path / f"prod{suffix}" for suffix in (".csv", ".parquet")}
    for path in paths.values():
        done = run_cli(
            "export", NAME, "--registry", str(registry_path), "--labeled-only",
            "--output", str(path), env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
    from_csv = pd.read_csv(paths[".csv"])
    from_parquet = pd.read_parquet(paths[".parquet"])
    assert list(from_parquet.columns) == list(from_csv.columns)
    assert len(from_parquet) == len(from_csv) == LABELLED
    features = registry.metadata(NAME, "1").feature_names
    pd.testing.assert_frame_equal(
        from_parquet[features].astype(float), from_csv[features].astype(float)
    )
    trained = run_cli(
        "train", str(DEFAULT_SPEC), "--registry", str(registry_path),
        "--set", "split.cv_folds=0", "--set", f'data.append=["{paths[".parquet"]}"]',
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr + trained.stdout
    assert registry.metadata(NAME, "2").rows["production"] == LABELLED  # type: ignore[attr-defined]
