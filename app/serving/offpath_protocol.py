"""What the server and the off-path scorer (``app.serving.offpath``) say to each other over
the scorer's stdin and stdout: length-prefixed pickles of a ``Start`` (answered ``"ready"``),
then, in turn, one hop of ``Task``s in and one ``Report`` out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy.typing as npt

from app.config import Settings
from app.results import InferenceResult
from app.serving.contract import Rows

Version = tuple[str, str]  # (model, version)


class ShadowRows(Protocol):
    """Where a shadow's outputs go: the prediction log's ``ShadowWriter``."""

    def write(self, result: InferenceResult) -> Mapping[str, int]:
        """Store the answers; the outcomes of the labels already stored for these rows."""

    def close(self) -> None: ...


ShadowLog = Callable[[Settings], ShadowRows]  # a class or module-level function: pickled by name


@dataclass(frozen=True)
class Start:
    registry: Path
    settings: Settings
    log: ShadowLog | None = None  # None: no prediction log


@dataclass(frozen=True)
class Task:
    """A hop's jobs for one scoring version, their rows merged (``concat``) to pickle once."""

    scorer: Version  # the version that scores the rows here
    challenger: str  # the non-production version agreement is counted for
    rows: Rows  # every job's rows, in order
    sizes: list[int]  # rows per job
    answered: npt.NDArray[Any]  # the predictions the jobs were answered with, in order
    ids: list[str]  # the rows' prediction ids, in order, where the outputs are logged; else []
    timed: bool  # its model calls' durations come back (a shadow's inference latency)


@dataclass
class Report:
    agree: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # model, version, outcome
    differences: dict[Version, list[float]] = field(default_factory=dict)  # regressors
    failures: Counter[Version] = field(default_factory=Counter)  # jobs, by scoring version
    errors: dict[Version, str] = field(default_factory=dict)  # one message per failing version
    durations: dict[Version, list[float]] = field(default_factory=dict)
    judged: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # labels already in
    log_failures: int = 0  # shadow rows the prediction log refused
    log_error: str = ""
