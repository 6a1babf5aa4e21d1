"""Helpers for the model-lifecycle tests: registry snapshots, quick in-process training."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from sklearn.datasets import load_breast_cancer

from app.registry.store import Registry
from app.training.spec import load_spec
from app.training.train import Outcome, run
from tests.helpers.support import ROOT

DEFAULT_SPEC = ROOT / "models" / "breast-cancer" / "train.yaml"
NAME = "breast-cancer"


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under the registry (the lock file excepted)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def train_quick(registry: Path, **overrides: Any) -> Outcome:
    """Train the default spec in-process (no CV) into ``registry``."""
    spec = load_spec(DEFAULT_SPEC, {"split.cv_folds": 0, **overrides})
    return run(spec, Registry(registry))


def breast_cancer_csv(
    path: Path, change: Callable[[pd.DataFrame], pd.DataFrame] | None = None
) -> Path:
    frame = load_breast_cancer(as_frame=True).frame
    if change is not None:
        frame = change(frame)
    frame.to_csv(path, index=False)
    return path


def served_version(url: str) -> str:
    example = Registry(ROOT / "models").metadata(NAME, "1").example
    response = httpx.post(f"{url}/predict", json={"instances": [example]}, timeout=10)
    assert response.status_code == 200, response.text
    version: str = response.json()["version"]
    return version


def wait_for_version(url: str, version: str, timeout: float) -> float:
    """Seconds until /predict answers with ``version``; fails after ``timeout``."""
    start = time.monotonic()
    seen = None
    while time.monotonic() - start < timeout:
        seen = served_version(url)
        if seen == version:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"still serving version {seen}, not {version}, after {timeout}s")


def metric_value(url: str, name: str, **labels: str) -> float | None:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None
