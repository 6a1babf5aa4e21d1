"""Versions pinned by ``/v2/models/{name}/versions/{v}`` that are not the served one: loaded on
demand, one load per version however many requests ask at once, kept in an LRU cache."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from app.registry import names
from app.serving.runner import ServedModel

log = logging.getLogger("app.serving.manager")


class PinnedVersions:
    def __init__(self, load: Callable[[str, str], Awaitable[ServedModel]], size: int) -> None:
        self._load = load
        self._size = size
        self._cache: OrderedDict[tuple[str, str], ServedModel] = OrderedDict()
        self._lock = asyncio.Lock()

    async def get(self, name: str, version: str) -> ServedModel:
        # Refused here, not in the loader thread under the lock a real load holds.
        names.checked_name(name)
        names.checked_version(version)
        key = (name, version)
        async with self._lock:  # one load per version, even under concurrent requests
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            served = await self._load(name, version)
            self._cache[key] = served
            while len(self._cache) > self._size:
                _, evicted = self._cache.popitem(last=False)
                await evicted.close()
            log.info("loaded pinned version", extra={"model": name, "version": version})
            return served

    def loaded(self) -> list[ServedModel]:
        return list(self._cache.values())
