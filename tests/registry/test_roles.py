"""Canary and shadow in aliases.json: weights, history, finishing and ending."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.registry.aliases import rollback_target
from app.registry.roles import RoleAliases, from_doc
from app.registry.store import ModelNotFoundError, Registry, RegistryError
from tests.helpers.lifecycle import NAME, train_quick


@pytest.fixture
def two_versions(registry_path: Path) -> Registry:
    train_quick(registry_path, **{"estimator.params.C": 0.02})
    registry = Registry(registry_path)
    assert registry.versions(NAME) == ["1", "2"]
    return registry


def test_a_canary_is_an_alias_with_a_weight_and_a_history_entry(two_versions: Registry) -> None:
    roles = RoleAliases(two_versions)
    state = roles.start_canary(NAME, "2", 10, reason="canary")
    assert (state.production, state.canary, state.canary_percent) == ("1", "2", 10.0)
    assert state.canary_share == pytest.approx(0.1)
    assert roles.read(NAME) == state
    last = two_versions.alias_history(NAME)[-1]
    assert (last["alias"], last["version"], last["weight"], last["reason"]) == (
        "canary",
        "2",
        10.0,
        "canary",
    )
    # Changing the weight is another move; production is untouched.
    assert roles.start_canary(NAME, "2", 50, reason="rollout 50%").canary_percent == 50
    assert two_versions.aliases(NAME)["production"] == "1"


def test_promoting_the_canary_finishes_it_and_rollback_ends_it(two_versions: Registry) -> None:
    roles = RoleAliases(two_versions)
    roles.start_canary(NAME, "2", 25, reason="canary")
    assert roles.end_canary(NAME, reason="rollback") == "2"
    assert roles.read(NAME).canary is None
    assert two_versions.aliases(NAME)["production"] == "1"
    assert roles.end_canary(NAME, reason="rollback") is None  # nothing to end

    roles.start_canary(NAME, "2", 25, reason="canary")
    assert roles.promote(NAME, "2") == "1"
    state = roles.read(NAME)
    assert (state.production, state.canary) == ("2", None)
    reasons = [(e["alias"], e["reason"]) for e in two_versions.alias_history(NAME)[-2:]]
    assert reasons == [("canary", "canary-finished"), ("production", "promote")]
    # Canary moves do not disturb the production rollback stack.
    assert rollback_target(two_versions.alias_history(NAME), "production") == "1"


def test_a_shadow_is_set_and_stopped(two_versions: Registry) -> None:
    roles = RoleAliases(two_versions)
    assert roles.set_shadow(NAME, "2") is None
    assert roles.read(NAME).shadow == "2"
    assert roles.set_shadow(NAME, None) == "2"
    assert roles.read(NAME).shadow is None
    assert two_versions.alias_history(NAME)[-1]["reason"] == "shadow"


@pytest.mark.parametrize("percent", [0, -5, 100.5])
def test_a_weight_outside_0_100_is_refused(two_versions: Registry, percent: float) -> None:
    with pytest.raises(ValueError, match="percentage"):
        RoleAliases(two_versions).start_canary(NAME, "2", percent, reason="canary")


def test_production_cannot_be_its_own_canary_or_shadow(two_versions: Registry) -> None:
    roles = RoleAliases(two_versions)
    with pytest.raises(RegistryError, match="already production"):
        roles.start_canary(NAME, "1", 10, reason="canary")
    with pytest.raises(RegistryError, match="production already"):
        roles.set_shadow(NAME, "1")
    with pytest.raises(ModelNotFoundError):
        roles.start_canary(NAME, "9", 10, reason="canary")
    assert roles.read(NAME).canary is None


def test_an_old_aliases_file_reads_as_no_canary() -> None:
    state = from_doc({"aliases": {"production": "3", "canary": "4"}, "history": []})
    assert (state.production, state.canary, state.canary_share) == ("3", "4", 0.0)
