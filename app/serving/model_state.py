"""A served model's bookkeeping beside its loaded version: the version its alias wants, why it
failed to load, and whether an earlier version answers in its place (a fallback).

Failures are logged through ``RepeatedFailureLog`` per model and version, so a registry that
stays unreadable or a broken version reloaded by every admin call is a line a minute, not one a
poll; ``modelserve_model_reload_failures_total`` still counts each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app import metrics
from app.failure_log import RepeatedFailureLog
from app.registry.aliases import alias_stack

log = logging.getLogger("app.serving.manager")  # the manager's lines, as before the split


@dataclass
class ModelState:
    alias: str
    wanted_version: str | None = None
    error: str | None = None
    fallback_from: str | None = None  # the alias's version, not served because it cannot load


def fallback_versions(history: Iterable[Mapping[str, Any]], alias: str, broken: str) -> list[str]:
    """Versions to try, newest first, when ``broken`` cannot load and nothing serves yet: what
    ``modelserve rollback`` would point at, then further back through the alias's history."""
    return [v for v in reversed(alias_stack(history, alias)) if v != broken]


class LoadFailures:
    def __init__(self) -> None:
        self._logs: dict[tuple[str, str | None], RepeatedFailureLog] = {}

    def failed(
        self,
        name: str,
        state: ModelState,
        version: str | None,
        exc: BaseException,
        serving: str | None,
    ) -> None:
        """``version`` of ``name`` (None: its alias could not be resolved) did not load."""
        state.error = str(exc)
        metrics.MODEL_RELOAD_FAILURES.labels(name).inc()
        keeping = f"; still serving version {serving}" if serving else ""
        self._log(name, version).failed(f"{exc}{keeping}", model=name, version=version)

    def resolved(self, name: str) -> None:
        self._log(name, None).succeeded(model=name)

    def fall_back(self, name: str, state: ModelState, broken: str) -> None:
        """An earlier version answers for ``name`` while ``broken`` cannot load."""
        if state.fallback_from not in (None, broken):
            metrics.MODEL_FALLBACK.labels(name, state.fallback_from).set(0)
        state.fallback_from = broken
        metrics.MODEL_FALLBACK.labels(name, broken).set(1)

    def recovered(self, name: str, state: ModelState) -> None:
        """What the alias points at serves: no error, no fallback."""
        state.error = None
        if state.fallback_from is not None:
            metrics.MODEL_FALLBACK.labels(name, state.fallback_from).set(0)
            self._log(name, state.fallback_from).succeeded(model=name)
            state.fallback_from = None

    def _log(self, name: str, version: str | None) -> RepeatedFailureLog:
        found = self._logs.get((name, version))
        if found is None:
            what = f"loading {name} version {version} failed" if version else f"resolving {name}"
            found = self._logs[(name, version)] = RepeatedFailureLog(log, what)
        return found
