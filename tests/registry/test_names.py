"""One rule for model names and versions; the registry refuses others before the filesystem."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sklearn.dummy import DummyClassifier

from app.registry import names
from app.registry.store import ModelNotFoundError, Registry, RegistryError
from app.training.spec import TrainSpec

VALID = ["a", "breast-cancer", "Model_1.2", "9" * names.MAX_NAME_LENGTH]
INVALID = [
    "",
    ".hidden",
    "-dash",
    "a/b",
    "../etc",
    "a b",
    "name\n",
    "a\x00b",
    "caf\u00e9",
    "a" * (names.MAX_NAME_LENGTH + 1),
    "a" * 300,  # over the 255 bytes a directory name may have
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names(name: str) -> None:
    assert names.checked_name(name) == name


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names(name: str) -> None:
    assert not names.valid_name(name)


@pytest.mark.parametrize("version", ["0", "01", "1" * 10, "\u0663", "1\n", "", "-1", "latest"])
def test_invalid_versions(version: str) -> None:
    assert not names.valid_version(version)


def test_versions_are_positive_numbers() -> None:
    assert [names.checked_version(v) for v in ("1", "42", "9" * 9)] == ["1", "42", "9" * 9]


@pytest.mark.parametrize("name", INVALID)
def test_registry_reads_say_not_found(registry: Registry, name: str) -> None:
    for read in (registry.versions, registry.aliases):
        with pytest.raises(ModelNotFoundError):
            read(name)
    with pytest.raises(ModelNotFoundError):
        registry.load(name, "1")


@pytest.mark.parametrize("version", ["1" * 300, "0", "\u0663"])
def test_registry_refuses_odd_versions(registry: Registry, version: str) -> None:
    with pytest.raises(ModelNotFoundError):
        registry.load("breast-cancer", version)


def test_registry_writes_refuse_invalid_names(registry: Registry, registry_path: Path) -> None:
    before = sorted(p.name for p in registry_path.iterdir())
    for name in ("a" * 300, "../outside", ".hidden"):
        with pytest.raises(RegistryError, match="not valid"):
            registry.register(name, DummyClassifier(), {})
    assert sorted(p.name for p in registry_path.iterdir()) == before
    assert not (registry_path.parent / "outside").exists()


def test_train_spec_uses_the_same_rule() -> None:
    spec = {"data": {"source": "sklearn:iris"}, "estimator": {"class": "LogisticRegression"}}
    TrainSpec.model_validate({**spec, "name": "9" * names.MAX_NAME_LENGTH})
    for name in INVALID:
        with pytest.raises(ValidationError) as refused:
            TrainSpec.model_validate({**spec, "name": name})
        assert [e["loc"] for e in refused.value.errors()] == [("name",)]
