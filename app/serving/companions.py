"""The versions served beside a model's production version: its canary and its shadow.

``ModelManager.refresh()`` reads each production model's ``Roles`` from the registry and
hands it here. A companion is loaded, verified and warmed like production (or reused when that
version is already loaded in another role), then put in its slot with one assignment; a version
leaving every role is closed (its batcher drains first). A companion that fails to load is left
out, counted in ``modelserve_model_reload_failures_total`` and retried when its alias moves (or
on an explicit reload): production keeps answering everything.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app import metrics
from app.registry.roles import CANARY, PRODUCTION, SHADOW, Roles
from app.serving.runner import ServedModel

log = logging.getLogger(__name__)

Loader = Callable[[str, str], Awaitable[ServedModel]]
InUse = Callable[[ServedModel], bool]  # whether any role (or production) still holds it


@dataclass(frozen=True)
class Canary:
    served: ServedModel
    share: float  # of the production alias's requests, 0..1


class Companions:
    def __init__(self, load: Loader, in_use: InUse) -> None:
        self._load = load
        self._in_use = in_use
        self.canaries: dict[str, Canary] = {}
        self.shadows: dict[str, ServedModel] = {}
        self._failed: set[tuple[str, str, str]] = set()

    def all(self) -> list[ServedModel]:
        return [c.served for c in self.canaries.values()] + list(self.shadows.values())

    def find(self, name: str, version: str) -> ServedModel | None:
        """The loaded companion of ``name`` at ``version``, if any."""
        return next((s for s in self.all() if s.name == name and s.version == version), None)

    def holds(self, served: ServedModel) -> bool:
        return any(s is served for s in self.all())

    async def update(
        self, name: str, production: ServedModel | None, wanted: Roles | None, force: bool
    ) -> None:
        """Bring ``name``'s canary and shadow to ``wanted`` (None: neither)."""
        serving = production.version if production is not None else None
        canary = wanted.canary if wanted is not None and wanted.canary != serving else None
        shadow = wanted.shadow if wanted is not None and wanted.shadow != serving else None
        old = self.canaries.get(name)
        new = await self._fill(name, CANARY, canary, old.served if old else None, force)
        if new is None:
            self.canaries.pop(name, None)
        else:
            assert wanted is not None
            self.canaries[name] = Canary(new, wanted.canary_share)
        metrics.CANARY_WEIGHT.labels(name).set(self.canaries[name].share if new else 0.0)
        await self._retire_unless(old.served if old else None, new, CANARY)
        old_shadow = self.shadows.get(name)
        new_shadow = await self._fill(name, SHADOW, shadow, old_shadow, force)
        if new_shadow is None:
            self.shadows.pop(name, None)
        else:
            self.shadows[name] = new_shadow
        await self._retire_unless(old_shadow, new_shadow, SHADOW)

    async def close(self) -> None:
        for served in self.all():
            await served.close()
        self.canaries.clear()
        self.shadows.clear()

    async def _fill(
        self,
        name: str,
        role: str,
        version: str | None,
        current: ServedModel | None,
        force: bool,
    ) -> ServedModel | None:
        if version is None:
            return None
        if current is not None and current.version == version:
            return current
        key = (name, role, version)
        if key in self._failed and not force:
            return None
        try:
            new = self.find(name, version) or await self._load(name, version)
        except Exception as exc:
            self._failed.add(key)
            metrics.MODEL_RELOAD_FAILURES.labels(name).inc()
            log.error("loading %s version %s as %s failed: %s", name, version, role, exc)
            return None
        self._failed.discard(key)
        new.announce()
        metrics.VERSION_ROLE.labels(name, version, role).set(1)
        log.info("serving %s", role, extra={"model": name, "version": version})
        return new

    async def _retire_unless(
        self, old: ServedModel | None, new: ServedModel | None, role: str
    ) -> None:
        if old is None or old is new:
            return
        metrics.VERSION_ROLE.labels(old.name, old.version, role).set(0)
        if not self._in_use(old):
            await old.close()


def production_role(old: ServedModel | None, new: ServedModel) -> None:
    """Move the production role gauge from ``old`` to ``new``."""
    if old is not None and old.version != new.version:
        metrics.VERSION_ROLE.labels(old.name, old.version, PRODUCTION).set(0)
    metrics.VERSION_ROLE.labels(new.name, new.version, PRODUCTION).set(1)
