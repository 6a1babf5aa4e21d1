"""What an explanation says, and the check every one passes before it leaves.

Per row: the model's prediction, its own output in the stated space (``probability`` per class,
``margin``: the decision function, or ``value``), the base value and one contribution per
original feature and output, such that base + the contributions = the output (to ``TOLERANCE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

OutputSpace = Literal["probability", "margin", "value"]
Method = Literal["linear", "tree_shap"]
Matrix = npt.NDArray[np.float64]
TOLERANCE = 1e-6


class NotExplainableError(Exception):
    """This version, or this row, has no exact explanation; the message says why."""


@dataclass(frozen=True)
class Explanation:
    method: Method
    output: OutputSpace
    output_names: list[Any]
    """What each output column is: a class (probability, margin) or ``value``."""
    features: list[str]
    predictions: npt.NDArray[Any]
    """``estimator.predict`` of the rows: (n,) or (n, targets)."""
    output_values: Matrix
    """The model's own output: (n, outputs)."""
    base: Matrix
    """(outputs,): the same for every row."""
    contributions: Matrix
    """(n, features, outputs), per original feature in the version's feature order."""

    def __len__(self) -> int:
        return len(self.output_values)


def sum_gap(explanation: Explanation) -> str | None:
    """None when base + contributions equal the model's output within ``TOLERANCE`` for every
    row and output; else the first row that does not, in words."""
    total = explanation.base[None, :] + explanation.contributions.sum(axis=1)
    gap = np.abs(total - explanation.output_values)
    bad = ~(gap <= TOLERANCE)  # NaN counts as a failure
    if not bad.any():
        return None
    row, column = (int(k) for k in np.argwhere(bad)[0])
    name = explanation.output_names[column]
    return (
        f"row {row}, output {name!r}: base value + contributions = {float(total[row, column])!r}, "
        f"the model's {explanation.output} is {float(explanation.output_values[row, column])!r} "
        f"(more than {TOLERANCE} apart)"
    )
