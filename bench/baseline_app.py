"""The textbook service the benchmark compares against (kept deliberately plain).

A sync FastAPI endpoint with a pydantic request body that calls ``model.predict`` once per
request, plus prometheus-fastapi-instrumentator. FastAPI runs sync endpoints in its thread
pool, so concurrent requests fight over the GIL instead of sharing a model call.

Run: ``BASELINE_MODEL=path/to/model.joblib uvicorn --app-dir bench baseline_app:app``.
"""

from __future__ import annotations

import os
from typing import Any

import joblib
from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator
from pydantic import BaseModel

model: Any = joblib.load(os.environ["BASELINE_MODEL"])
app = FastAPI(title="baseline")
Instrumentator().instrument(app).expose(app)


class PredictRequest(BaseModel):
    instances: list[list[float]]


class PredictResponse(BaseModel):
    predictions: list[int]


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict(request: PredictRequest) -> PredictResponse:
    return PredictResponse(predictions=model.predict(request.instances).tolist())
