"""Compiled tree ensembles against scikit-learn's own path, in process (no HTTP).

For RandomForest(200), ExtraTrees(200), GradientBoosting(100) and HistGradientBoosting on the
breast-cancer data, and the bench's mixed pipeline (OneHotEncoder + HistGradientBoosting on a
DataFrame), prints the median time of one model call (predictions and probabilities, as the
server calls it) on 1 and 50 rows: the scorer modelserve served before compiled trees
(``compile_scorer(..., trees=False)``) and the compiled one, plus the load-time probe's cost.

    .venv/bin/python -m bench.trees [--repeat 300]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.model_selection import train_test_split

from app.serving.onepass import COMPILED, compile_scorer
from bench.models import NUMBERS, SEED, STRINGS, median_ms, mixed_frame, mixed_pipeline

Case = tuple[str, Any, Callable[[int], Any], bool]


def cases() -> list[Case]:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, _ = train_test_split(
        X, y, test_size=0.2, random_state=SEED, stratify=y
    )
    numeric = [
        ("RandomForest(200)", RandomForestClassifier(200, random_state=SEED)),
        ("ExtraTrees(200)", ExtraTreesClassifier(200, random_state=SEED)),
        ("GradientBoosting(100)", GradientBoostingClassifier(random_state=SEED)),
        ("HistGradientBoosting", HistGradientBoostingClassifier(random_state=SEED)),
    ]
    found: list[Case] = [
        (name, model.fit(X_train, y_train), lambda n: X_test[:n], True) for name, model in numeric
    ]
    frame, target = mixed_frame()
    train, test, y_frame, _ = train_test_split(
        frame, target, test_size=0.2, random_state=SEED, stratify=target
    )
    mixed = mixed_pipeline().fit(train, y_frame)
    found.append(("mixed pipeline", mixed, lambda n: test[STRINGS + NUMBERS].iloc[:n], False))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    print("| model | rows | before, ms | compiled, ms | speed-up | probe at load, ms |")
    print("|---|---|---|---|---|---|")
    for name, model, rows_of, fast in cases():
        before = compile_scorer(model, True, fast=fast, trees=False)
        start = time.perf_counter()
        after = compile_scorer(model, True, fast=fast)
        probe_ms = (time.perf_counter() - start) * 1000
        assert after.name == COMPILED, f"{name}: {after.refused}"
        for n in (1, 50):
            rows = rows_of(n)
            old, new = before(rows), after(rows)
            assert np.array_equal(old[0], new[0]) and old[1] is not None and new[1] is not None
            assert old[1].tobytes() == new[1].tobytes(), name
            b, a = median_ms(before, rows, args.repeat), median_ms(after, rows, args.repeat)
            print(f"| {name} | {n} | {b:.3f} | {a:.3f} | {b / a:.1f}x | {probe_ms:.0f} |")


if __name__ == "__main__":
    main()
