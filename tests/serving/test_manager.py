"""ModelManager: a failed version is not retried every poll, but an explicit reload retries it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app import metrics
from app.config import Settings
from app.registry.store import ModelNotFoundError, Registry
from app.serving.manager import ModelManager, ModelNotReadyError


def _failures(model: str) -> float:
    return float(metrics.MODEL_RELOAD_FAILURES.labels(model)._value.get())


def test_failed_version_waits_for_a_forced_reload(registry_path: Path) -> None:
    registry = Registry(registry_path)
    v1 = registry.load("breast-cancer", "1")
    meta = registry.register(
        "breast-cancer", v1.estimator, v1.metadata.model_dump(exclude={"name", "version"})
    )
    registry.set_alias("breast-cancer", "production", meta.version)
    artifact = registry_path / "breast-cancer" / meta.version / meta.artifact
    good = artifact.read_bytes()
    artifact.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))

    async def scenario() -> None:
        manager = ModelManager(registry, Settings(registry=registry_path, poll_interval_s=0))
        await manager.start()
        try:
            before = _failures("breast-cancer")
            # Served meanwhile by the version before it in the alias history.
            assert manager.get("breast-cancer").version == "1"
            assert manager.states["breast-cancer"].error
            assert manager.states["breast-cancer"].fallback_from == meta.version
            assert await manager.refresh() == []  # same broken version: not retried
            assert _failures("breast-cancer") == before
            artifact.write_bytes(good)  # repaired in place
            assert await manager.refresh() == []
            swaps = await manager.refresh(force=True)
            assert [(s.model, s.old_version, s.new_version, s.error) for s in swaps] == [
                ("breast-cancer", "1", meta.version, None)
            ]
            assert manager.get("breast-cancer").version == meta.version
            assert manager.states["breast-cancer"].fallback_from is None
        finally:
            await manager.stop()

    asyncio.run(scenario())


def test_requests_during_start_up_wait_for_the_first_load(registry_path: Path) -> None:
    """A worker accepts connections while loading; its first request waits, not a 404/503."""

    async def scenario() -> None:
        manager = ModelManager(
            Registry(registry_path), Settings(registry=registry_path, poll_interval_s=0)
        )
        starting = asyncio.get_running_loop().create_task(manager.start())
        try:
            served = await manager.get_loaded("breast-cancer", wait_s=30)
            assert served.version == "1"
            assert manager.started
            with pytest.raises(ModelNotFoundError):  # unknown names still fail, once started
                await manager.get_loaded("no-such-model", wait_s=30)
        finally:
            await starting
            await manager.stop()

    asyncio.run(scenario())


def test_a_failed_load_is_not_waited_for(registry_path: Path) -> None:
    artifact = registry_path / "breast-cancer" / "1" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"\0")

    async def scenario() -> None:
        manager = ModelManager(
            Registry(registry_path), Settings(registry=registry_path, poll_interval_s=0)
        )
        await manager.start()
        try:
            with pytest.raises(ModelNotReadyError, match="sha256"):
                await manager.get_loaded("breast-cancer", wait_s=30)
        finally:
            await manager.stop()

    asyncio.run(scenario())
