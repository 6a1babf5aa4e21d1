"""A compiled transform made wrong on purpose, for the tests of its load-time probe."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from app.serving.prefixcompile import CompiledPrefix
from app.serving.treearrays import Floats


def one_category_off(compiled: CompiledPrefix) -> CompiledPrefix:
    """The same compiled transform with its first two output columns swapped: the first
    encoder's first two categories mapped to each other's column."""
    read = compiled.read

    def swapped(columns: Sequence[Sequence[Any]]) -> Floats:
        out = read(columns)
        out[:, [0, 1]] = out[:, [1, 0]]
        return out

    return dataclasses.replace(compiled, read=swapped)
