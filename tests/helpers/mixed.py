"""A model as data teams ship it: a DataFrame pipeline over strings, numbers, booleans, nulls."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.helpers.support import run_cli

MIXED = "churn"
TARGET = "churned"


def churn_frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "plan": rng.choice(["basic", "pro", "team"], n, p=[0.5, 0.3, 0.2]),
            "country": rng.choice(["de", "fr", "us"], n),
            "seats": rng.integers(1, 50, n),
            "monthly_fee": rng.normal(30, 8, n).round(2),
            "autopay": rng.random(n) < 0.6,
            "tenure_months": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 60, n)),
        }
    )
    frame[TARGET] = np.where((frame["plan"] == "basic") & (frame["monthly_fee"] > 30), "yes", "no")
    return frame


def fit_churn(frame: pd.DataFrame) -> object:
    model = make_pipeline(
        ColumnTransformer(
            [("categories", OneHotEncoder(handle_unknown="ignore"), ["plan", "country"])],
            remainder="passthrough",
        ),
        HistGradientBoostingClassifier(max_iter=30, random_state=0),
    )
    return model.fit(frame.drop(columns=TARGET), frame[TARGET])


def city_income_pipeline() -> Pipeline:
    """The notebook pipeline over city (string, nullable), income, age and member columns."""
    prep = ColumnTransformer(
        [
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                ["city"],
            ),
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["income", "age"]),
            ("flag", "passthrough", ["member"]),
        ]
    )
    return Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=1000))])


def register_churn(registry: Path, workdir: Path, name: str = MIXED) -> Path:
    """Fit, ``joblib.dump`` and ``modelserve register`` the model (production); its sample CSV."""
    frame = churn_frame()
    artifact, sample = workdir / f"{name}.joblib", workdir / f"{name}.csv"
    joblib.dump(fit_churn(frame), artifact)
    frame.to_csv(sample, index=False)
    args = ["register", name, str(artifact), "--sample", str(sample), "--target", TARGET]
    done = run_cli(*args, "--promote", "--registry", str(registry))
    assert done.returncode == 0, done.stdout + done.stderr
    return sample


def copy_registered(template: Path, registry: Path, name: str = MIXED) -> None:
    """Put a model registered once (``register_churn`` into ``template``) into ``registry``, as
    registering it there would: a module registers it once, each test gets its own copy."""
    shutil.copytree(template / name, registry / name, ignore=shutil.ignore_patterns(".lock"))


def simulate(url: str, model: str, sample: Path, rate: int, seconds: float, *extra: str) -> int:
    """``modelserve simulate`` on a churn sample (labels at once); the predictions answered."""
    args = ["simulate", "--url", url, "--model", model, "--data", str(sample)]
    args += ["--target", TARGET, "--rate", str(rate), "--duration", str(seconds)]
    done = run_cli(*args, "--feedback-delay", "0", *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    answered = re.search(r"^predictions\s+(\d+) ok", done.stdout, re.M)
    assert answered, done.stdout
    return int(answered.group(1))
