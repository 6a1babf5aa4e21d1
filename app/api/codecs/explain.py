"""An ``Explanation`` as KServe V1 JSON (``:explain``) and as Open Inference Protocol tensors.

V1, one object per row in ``explanations``: ``prediction``, ``output_value`` (the model's own
output, one number per output), ``base_value`` and ``contributions`` (per original feature,
one number per output), with ``output`` (``probability``, ``margin`` or ``value``) and
``outputs`` (what each output is: a class, or ``value``) said once. OIP v2: the tensors
``predict`` [N], ``output_value`` and ``base_value`` [N, outputs] and ``contributions``
[N, features, outputs], the same facts in ``parameters``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, Field
from starlette.responses import Response

from app.api.codecs import v2
from app.serving.explain.result import Explanation


class RowExplanation(BaseModel):
    prediction: Any
    output_value: list[float] = Field(description="The model's own output, one per output.")
    base_value: list[float] = Field(description="The output at the background, per output.")
    contributions: dict[str, list[float]] = Field(
        description="Per original feature, one number per output; with base_value they add up "
        "to output_value (checked to 1e-6 before the answer leaves)."
    )


class ExplainResponse(BaseModel):
    model: str
    version: str
    method: str = Field(description="linear (coef * (x - background mean)) or tree_shap.")
    output: str = Field(description="probability (per class), margin (decision_function) or value.")
    outputs: list[Any] = Field(description="What each output is: a class, or value.")
    features: list[str]
    explanations: list[RowExplanation]


def _facts(explanation: Explanation) -> dict[str, Any]:
    return {
        "method": explanation.method,
        "output": explanation.output,
        "outputs": explanation.output_names,
        "features": explanation.features,
    }


def v1_response(model: str, version: str, explanation: Explanation) -> Response:
    base = explanation.base.tolist()
    features = explanation.features
    rows = [
        {
            "prediction": prediction,
            "output_value": values,
            "base_value": base,
            "contributions": dict(zip(features, contributions, strict=True)),
        }
        for prediction, values, contributions in zip(
            explanation.predictions.tolist(),
            explanation.output_values.tolist(),
            explanation.contributions.tolist(),
            strict=True,
        )
    ]
    payload = {"model": model, "version": version, **_facts(explanation), "explanations": rows}
    return Response(orjson.dumps(payload), media_type="application/json")


def v2_response(model: str, version: str, request_id: str, explanation: Explanation) -> Response:
    n = len(explanation)
    arrays = {
        "predict": np.asarray(explanation.predictions),
        "output_value": explanation.output_values,
        "base_value": np.tile(explanation.base, (n, 1)),
        "contributions": explanation.contributions,
    }
    return v2.json_response(
        {
            "model_name": model,
            "model_version": version,
            "id": request_id,
            "parameters": _facts(explanation),
            "outputs": [v2.output_tensor(name, array) for name, array in arrays.items()],
        }
    )
