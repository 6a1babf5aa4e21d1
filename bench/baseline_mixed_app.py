"""The textbook service for a mixed-type model fitted on a DataFrame (kept deliberately plain).

A sync FastAPI endpoint with a pydantic request body of rows keyed by column name; each
request builds a ``pd.DataFrame`` from them (columns in the training order), then calls
``model.predict`` and ``model.predict_proba``; plus prometheus-fastapi-instrumentator. FastAPI
runs sync endpoints in its thread pool, so concurrent requests fight over the GIL instead of
sharing a model call.

Run: ``BASELINE_MODEL=path/to/model.joblib uvicorn --app-dir bench baseline_mixed_app:app``.
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import pandas as pd
from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator
from pydantic import BaseModel

model: Any = joblib.load(os.environ["BASELINE_MODEL"])
columns = list(model.feature_names_in_)
app = FastAPI(title="baseline-mixed")
Instrumentator().instrument(app).expose(app)


class PredictRequest(BaseModel):
    instances: list[dict[str, str | int | float]]


class PredictResponse(BaseModel):
    predictions: list[int]
    probabilities: list[list[float]]


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict(request: PredictRequest) -> PredictResponse:
    frame = pd.DataFrame(request.instances)[columns]
    return PredictResponse(
        predictions=model.predict(frame).tolist(),
        probabilities=model.predict_proba(frame).tolist(),
    )
