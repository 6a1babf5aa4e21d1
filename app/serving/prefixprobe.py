"""The compiled transform's load-time proof, and the scorer that uses it.

A version whose rows are typed and whose pipeline's transforming steps compile
(``prefixcompile``) is probed: the version's probe rows in one call, then rows with every
category of every encoder, a missing value in each nullable feature, an unknown category in
each string feature and edge numbers (zero and minus zero, huge, tiny, integers past 2**53),
each alone and all together. Every call must give the steps' own ``transform`` output bit for
bit: a float64 ndarray of the same shape and memory order, the same bits in every cell (NaN
and -0.0 included); where scikit-learn raises, the compiled transform must decline. Then the
scorer answers from the matrix: a call the compiled transform declines goes to scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from app.registry.metadata import FeatureSpec, Value
from app.serving.contract import InputContract, TypedRows, model_input
from app.serving.onepass import Scored, Scorer
from app.serving.prefixcompile import CompiledPrefix, compile_prefix
from app.serving.treescore import NotCompiledError
from app.serving.typed import INT_LIMIT

COMPILED_TRANSFORM = "compiled"
UNKNOWN = "\x00modelserve probe: a category no model knows"
_NUMBERS = [0.0, -0.0, 1.5e300, -2.5e-300, 5e-324, 123456.789]
_INTEGERS = [0, -1, 2**53 + 1, -(2**62) - 3, INT_LIMIT - 1]
_FORM = "scikit-learn's transform gives"


def compiled_transform(
    score: Scorer,
    estimator: Any,
    contract: InputContract,
    example: Sequence[Value],
    probe: Sequence[list[Value]],
) -> tuple[Scorer | None, str, bool]:
    """``score`` answering typed rows through the compiled transform if the probe proves it
    exact, else None, why not (empty: no transforming steps to compile) and whether the
    probe found it wrong (rather than a form it does not compile)."""
    if score.tail is None or contract.numeric:
        return None, "", False
    try:
        compiled = compile_prefix(estimator[:-1], contract.features)  # the tests' seam
    except NotCompiledError as exc:
        return None, str(exc), False
    except Exception as exc:  # an attribute a release renamed, say: scikit-learn's transform
        return None, f"it could not be compiled ({type(exc).__name__}: {exc})", False
    prefix = estimator[:-1]
    together = [list(r) for r in probe]
    first = _sklearn(prefix, contract, together)
    if isinstance(first, np.ndarray) and first.ndim == 2 and len(together) > 1:
        compiled = replace(compiled, fortran=not first.flags.c_contiguous)
    categories: dict[int, tuple[str, ...]] = {}
    for j, known in compiled.categories:
        categories[j] = categories.get(j, ()) + known
    edges = edge_rows(contract.features, example, categories)
    accepted = [r for r in edges if _sklearn(prefix, contract, [r]) is not None]
    for rows in [together, *([r] for r in edges), accepted]:
        if not rows:
            continue
        refused = _differs(compiled, prefix, contract, rows)
        if refused:  # a dtype it cannot give is a form, not a fault
            return None, refused, not refused.startswith(_FORM)
    return _scorer(score, compiled), "", False


def _scorer(score: Scorer, compiled: CompiledPrefix) -> Scorer:
    tail = score.tail
    assert tail is not None

    def typed(rows: TypedRows) -> Scored | None:
        matrix = compiled.transform(rows.cells)
        return None if matrix is None else tail(matrix)

    return replace(score, typed=typed, transform=COMPILED_TRANSFORM)


def edge_rows(
    features: Sequence[FeatureSpec],
    example: Sequence[Value],
    categories: dict[int, tuple[str, ...]],
) -> list[list[Value]]:
    """The example with one feature changed per row: every category (the feature's and its
    encoders'), a missing value, an unknown category, edge numbers; then every nullable
    feature missing at once."""
    rows: list[list[Value]] = []
    for j, spec in enumerate(features):
        values: list[Value] = []
        if spec.kind == "string":
            known = dict.fromkeys([*(spec.categories or []), *categories.get(j, ())])
            values += [*known, UNKNOWN, ""]
        elif spec.kind == "number":
            values += _NUMBERS
        elif spec.kind == "integer":
            values += _INTEGERS
        elif spec.kind == "boolean":
            values += [True, False]
        if spec.nullable:
            values.append(None)
        rows += [[*example[:j], v, *example[j + 1 :]] for v in values]
    nullable = [j for j, spec in enumerate(features) if spec.nullable]
    if nullable:
        rows.append([None if j in nullable else v for j, v in enumerate(example)])
    return rows


def _sklearn(prefix: Any, contract: InputContract, rows: list[list[Value]]) -> Any:
    """The steps' own output for ``rows``, or None where the contract or the steps refuse."""
    try:
        return prefix.transform(model_input(contract.records([list(r) for r in rows], "probe")))
    except Exception:
        return None


def _differs(
    compiled: CompiledPrefix, prefix: Any, contract: InputContract, rows: list[list[Value]]
) -> str:
    """Why the compiled transform's output for ``rows`` is not scikit-learn's ('' if it is)."""
    try:
        typed = contract.records([list(r) for r in rows], "probe")
    except Exception:
        return ""  # a row the contract refuses never reaches a model
    assert isinstance(typed, TypedRows)
    mine = compiled.transform([list(r) for r in typed.cells])
    theirs = _sklearn(prefix, contract, rows)
    if theirs is None:
        return "" if mine is None else "it answers rows scikit-learn's transform refuses"
    if mine is None:
        return "it declines rows scikit-learn's transform takes"
    if not (isinstance(theirs, np.ndarray) and theirs.dtype == np.float64):
        dtype = getattr(theirs, "dtype", "")
        return f"{_FORM} {type(theirs).__name__} {dtype}".rstrip()
    if theirs.shape != mine.shape:
        return f"its output has shape {mine.shape}, scikit-learn's {theirs.shape}"
    if len(rows) > 1 and theirs.flags.c_contiguous != mine.flags.c_contiguous:
        return "its output is in another memory order than scikit-learn's"
    if not np.array_equal(_bits(theirs), _bits(mine)):
        return "its output differs from scikit-learn's transform on the probe rows"
    return ""


def _bits(matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.ascontiguousarray(matrix).view(np.uint64)
