"""ModelManager: a failed version is not retried every poll, but an explicit reload retries it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app import metrics
from app.config import Settings
from app.registry.store import Registry
from app.serving.manager import ModelManager


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
            assert "breast-cancer" not in manager.served
            assert manager.states["breast-cancer"].error
            assert await manager.refresh() == []  # same broken version: not retried
            assert _failures("breast-cancer") == before
            artifact.write_bytes(good)  # repaired in place
            assert await manager.refresh() == []
            swaps = await manager.refresh(force=True)
            assert [(s.model, s.new_version, s.error) for s in swaps] == [
                ("breast-cancer", meta.version, None)
            ]
            assert manager.get("breast-cancer").version == meta.version
        finally:
            await manager.stop()

    asyncio.run(scenario())
