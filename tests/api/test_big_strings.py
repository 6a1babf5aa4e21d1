"""A megabyte string on every route gets a 4xx of a few hundred bytes naming its field
(issue #26, point 3: errors echoed what they were sent, twice over).

Before, a 1 MB value of a string feature that the model's encoder refuses got a 422 of about
2 MB (modelserve's message quoted the value, then scikit-learn's message quoted it again);
a 1 MB unknown key, a v2 BYTES tensor and /invocations the same. Now a string longer than
MODELSERVE_MAX_STRING_LENGTH is refused before the model, and any client value an error
quotes, a model's own exception text included, is cut to its first characters and its size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import pytest
from fastapi.testclient import TestClient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from tests.helpers.big_strings import KINDS, MB, ROW, distinct_string
from tests.helpers.mixed import MIXED, TARGET, churn_frame, copy_registered, register_churn
from tests.helpers.support import run_cli

STRICT = "strict"
LIMIT = 8 * 1024  # the largest answer to any of these requests


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The churn model and ``strict``, the same pipeline with an encoder that refuses
    categories it never saw (scikit-learn's message then quotes the value)."""
    workdir = tmp_path_factory.mktemp("big-strings")
    sample = register_churn(workdir / "models", workdir)
    frame = churn_frame()
    strict = make_pipeline(
        ColumnTransformer(
            [("categories", OneHotEncoder(handle_unknown="error"), ["plan", "country"])],
            remainder="passthrough",
        ),
        HistGradientBoostingClassifier(max_iter=10, random_state=0),
    ).fit(frame.drop(columns=TARGET), frame[TARGET])
    joblib.dump(strict, workdir / "strict.joblib")
    done = run_cli(
        "register", STRICT, str(workdir / "strict.joblib"), "--sample", str(sample),
        "--target", TARGET, "--promote", "--registry", str(workdir / "models"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return workdir / "models"


@pytest.fixture
def serve(
    registry_path: Path, registered: Path, make_client: Callable[..., TestClient]
) -> Callable[..., TestClient]:
    for name in (MIXED, STRICT):
        copy_registered(registered, registry_path, name)
    return lambda **settings: make_client(default_model=MIXED, **settings)


def _small_4xx(response: Any) -> str:
    assert 400 <= response.status_code < 500, response.text[:300]
    assert len(response.content) <= LIMIT, (len(response.content), response.text[:300])
    return str(response.text)


@pytest.mark.parametrize("kind", KINDS)
def test_a_megabyte_string_gets_a_small_4xx_naming_its_field(
    serve: Callable[..., TestClient], kind: str
) -> None:
    client = serve()
    pid = client.post("/predict", json={"instances": [ROW]}).json()["prediction_ids"][0]
    call = KINDS[kind](distinct_string(1), pid)
    text = _small_4xx(client.post(call.path, content=call.body, headers=call.headers))
    assert any(name in text for name in call.names), text
    assert " bytes)" in text or "at most" in text, text  # a value quoted cut, with its size
    assert client.post("/predict", json={"instances": [ROW]}).status_code == 200


@pytest.mark.parametrize("path", ["/predict", f"/v1/models/{STRICT}:predict"])
def test_the_limit_is_the_setting(serve: Callable[..., TestClient], path: str) -> None:
    client = serve(max_string_length=100)
    body = {"instances": [{**ROW, "plan": "p" * 101}]}
    error = client.post(path, json=body).json()["error"]
    assert error["field"] == "instances[0].plan"
    assert error["message"] == (
        "feature 'plan' takes strings of at most 100 characters (MODELSERVE_MAX_STRING_LENGTH), "
        f"got the string {'p' * 64!r}... (101 bytes)"
    )
    # At the limit the value reaches the model: the churn model ignores it, strict refuses it.
    body = {"instances": [{**ROW, "plan": "p" * 100}]}
    answer = client.post(path, json=body)
    assert answer.status_code == (200 if path == "/predict" else 422), answer.text


def test_a_model_s_own_message_is_cut_too(serve: Callable[..., TestClient]) -> None:
    """The reproduction: a string the limit lets through, which the model's encoder refuses;
    scikit-learn quotes it whole in its message."""
    client = serve(max_string_length=2 * MB)
    big = distinct_string(2)
    body = {"instances": [{**ROW, "plan": big}]}
    response = client.post(f"/v1/models/{STRICT}:predict", json=body)
    text = _small_4xx(response)
    error = response.json()["error"]
    assert error["type"] == "rejected_by_model" and error["field"] == "plan", text
    assert error["message"].startswith(
        f"feature 'plan' has the value {big[:64]!r}... (1048576 bytes), not seen "
        "in training, and the model refuses it: Found unknown categories"
    ), text


@pytest.mark.parametrize(
    "path",
    [
        "/models/{big}",
        "/v1/models/{big}:predict",
        "/v2/models/{big}/infer",
        "/models/{big}/invocations",
        "/v2/models/churn/versions/{big}/infer",
    ],
)
def test_a_long_name_in_the_path_is_cut(serve: Callable[..., TestClient], path: str) -> None:
    client = serve()
    url = path.format(big="n" * 60_000)  # httpx sends no URL over 64 KiB
    if path == "/models/{big}":
        response = client.get(url)
    else:
        response = client.post(url, json={"instances": [ROW]})
    text = _small_4xx(response)
    assert "nnnn" in text and "... (60" in text, text


def test_feedback_quotes_a_long_label_by_its_first_characters(
    serve: Callable[..., TestClient],
) -> None:
    client = serve()
    pid = client.post("/predict", json={"instances": [ROW]}).json()["prediction_ids"][0]
    error = client.post("/feedback", json={"prediction_id": pid, "label": "x" * 5000}).json()
    assert error["error"]["message"].startswith(
        f"label {'x' * 64!r}... (5000 bytes) is not one of the classes of {MIXED}"
    ), error
