"""Text models (a pipeline whose first step is a text vectorizer, fitted on a list of strings):
one string feature, no categories, the texts handed to the model as one document per row."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

from app.registry.store import Registry
from app.training.reference import build_frame_reference
from app.training.register import RegisterError, Request, run
from app.training.schema_infer import infer_features, input_format, model_input

WORDS = ["good", "great", "love", "nice", "bad", "awful", "hate", "slow", "the", "it"]


def reviews(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    docs = [" ".join(rng.choice(WORDS, rng.integers(2, 9))) for _ in range(n)]
    labels = [int(sum(w in WORDS[:4] for w in d.split()) > len(d.split()) / 2) for d in docs]
    return pd.DataFrame({"review": docs, "label": labels})


def text_model(first: object = None) -> Pipeline:
    frame = reviews()
    model = make_pipeline(first or TfidfVectorizer(), LogisticRegression())
    return model.fit(frame["review"].tolist(), frame["label"])


@pytest.mark.parametrize(
    "first", [TfidfVectorizer(), CountVectorizer(ngram_range=(1, 2)), HashingVectorizer()]
)
def test_a_vectorizer_pipeline_takes_one_text_per_row(first: object) -> None:
    model, frame = text_model(first), reviews()
    assert input_format(model) == "text"
    (feature,) = infer_features(model, frame, "label")
    assert (feature.name, feature.kind, feature.nullable, feature.categories) == (
        "review",
        "string",
        False,
        None,
    )
    rows = model_input(frame.iloc[:5], [feature], "text")
    assert isinstance(rows, np.ndarray) and rows.shape == (5,)
    assert model.predict(rows).tolist() == model.predict(frame.review[:5].tolist()).tolist()


def test_without_a_sample_the_feature_is_called_text() -> None:
    (feature,) = infer_features(text_model())
    assert feature.name == "text" and feature.kind == "string"


def test_a_sample_with_more_than_one_column_is_refused_naming_them(tmp_path: Path) -> None:
    artifact = tmp_path / "model.joblib"
    joblib.dump(text_model(), artifact)
    sample = tmp_path / "sample.csv"
    reviews().assign(stars=3).to_csv(sample, index=False)
    registry = Registry(tmp_path / "models")
    with pytest.raises(RegisterError, match=r"one text per row .* 3: review, label, stars"):
        run(Request("reviews", artifact, sample), registry)
    with pytest.raises(RegisterError, match="sample's columns are 2: review, stars"):
        run(Request("reviews", artifact, sample, "label"), registry)


def test_register_scores_the_texts_and_keeps_no_categories(tmp_path: Path) -> None:
    model = make_pipeline(CountVectorizer(), MultinomialNB())
    frame = reviews()
    frame.loc[::3, "review"] = ""  # empty cells in the CSV, read back as missing
    model.fit(frame.review.tolist(), frame.label)
    artifact, sample = tmp_path / "model.joblib", tmp_path / "sample.csv"
    joblib.dump(model, artifact)
    frame.to_csv(sample, index=False)
    registry = Registry(tmp_path / "models")
    outcome = run(Request("reviews", artifact, sample, "label", promote=True), registry)
    assert outcome.status == "registered"
    meta = registry.metadata("reviews", "1")
    assert meta.input_format == "text" and meta.example == [""]  # as fitted: not missing
    assert all(isinstance(row[0], str) for row in meta.background), meta.background
    accuracy = model.score(frame.review.tolist(), frame.label)
    assert meta.metrics["accuracy"] == pytest.approx(accuracy)
    assert meta.reference.categorical == {} and meta.reference.features == {}


def test_a_frame_models_text_column_is_free_text_beside_its_categories() -> None:
    frame = reviews().assign(plan=lambda f: np.where(f.index % 3 == 0, "pro", "basic"))
    columns = ColumnTransformer(
        [("words", TfidfVectorizer(), "review"), ("plan", OneHotEncoder(), ["plan"])]
    )
    X = frame.drop(columns="label")
    model = make_pipeline(columns, LogisticRegression()).fit(X, frame.label)
    assert input_format(model) == "frame"
    specs = {f.name: f for f in infer_features(model, frame, "label")}
    assert (specs["review"].kind, specs["review"].categories) == ("string", None)
    assert specs["plan"].categories == ["basic", "pro"]
    reference = build_frame_reference(X, frame.label.to_numpy(), list(specs.values()), True)
    assert set(reference.categorical) == {"plan"}
