"""InferenceResult: what one request's model call answered, for codecs and the prediction log.

A leaf: serving makes it, the API encodes it, and the prediction log and the off-path scorer's
shadow writer store it, without either knowing the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class InferenceResult:
    model: str
    version: str
    predictions: npt.NDArray[np.generic]
    probabilities: npt.NDArray[np.float64] | None
    prediction_ids: list[str]
