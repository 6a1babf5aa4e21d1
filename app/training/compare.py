"""Gate a candidate and compare it with production on the same rows (train and register)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.registry.metadata import ModelMetadata
from app.registry.store import ModelNotFoundError, Registry, RegistryError
from app.training.evaluate import Comparison, GateResult, gate

PRODUCTION = "production"


def production_of(registry: Registry, name: str) -> tuple[str, ModelMetadata] | None:
    """The production version and its metadata; None for a new model (or no alias yet)."""
    try:
        version = registry.resolve(name, PRODUCTION)
        return version, registry.metadata(name, version)
    except ModelNotFoundError:
        return None


def judge(
    registry: Registry,
    name: str,
    production: tuple[str, ModelMetadata] | None,
    candidate: dict[str, float],
    score_champion: Callable[[Any, ModelMetadata], dict[str, float]],
    thresholds: dict[str, float],
    primary: str,
    tolerance: float,
    report: dict[str, Any],
    compared: dict[str, float] | None = None,
    compared_on: str = "held-out rows",
) -> tuple[Comparison, list[GateResult]]:
    """Gate the candidate and compare it with production (``score_champion``: its estimator and
    metadata) on the same rows into ``report``: one step, so train and register agree.

    ``compared``: the candidate's scores on the rows ``score_champion`` scores, when those are
    not the gated ones (the held-out production rows of ``data.append``)."""
    champion: dict[str, float] | None = None
    if production is not None:
        try:
            loaded = registry.load(name, production[0])
            champion = score_champion(loaded.estimator, loaded.metadata)
        except (RegistryError, ValueError) as exc:
            report["champion_error"] = str(exc)
    comparison = Comparison(
        production[0] if production else None,
        candidate if compared is None else compared,
        champion,
        primary,
        tolerance,
    )
    gates = gate(candidate, thresholds)
    report["metrics"] = candidate
    report["gate"] = [{"rule": g.rule, "value": g.value, "ok": g.ok} for g in gates]
    report["comparison"] = {
        "production_version": comparison.champion_version,
        "primary": comparison.primary,
        "tolerance": tolerance,
        "compared_on": compared_on,
        "candidate_not_worse": comparison.candidate_not_worse,
        "rows": comparison.rows(),
    }
    return comparison, gates
