"""Which models and versions this process serves; loads them and swaps them atomically.

The served set is the default model (at the configured alias) plus every registry model with a
``production`` alias. ``refresh()`` re-reads the aliases: a changed version is verified,
loaded and warmed in a background thread, then swapped in with one dict assignment. Requests
already holding the old ``ServedModel`` finish on it; a failed load keeps the old one serving
and counts ``modelserve_model_reload_failures_total``; with nothing serving yet, an earlier
version of the alias history answers (``model_state``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from app.config import Settings
from app.failure_log import RepeatedFailureLog
from app.registry.roles import RoleAliases, Roles
from app.registry.store import ModelNotFoundError, Registry, RegistryError
from app.serving.companions import Companions, production_role
from app.serving.model_state import LoadFailures, ModelState, fallback_versions
from app.serving.pinned import PinnedVersions
from app.serving.runner import ServedModel

log = logging.getLogger(__name__)

PRODUCTION = "production"


class ModelNotReadyError(Exception):
    """The model is known but has no loaded version (still loading, or its load failed)."""


@dataclass(frozen=True)
class SwapResult:
    model: str
    old_version: str | None
    new_version: str | None
    error: str | None = None


class ModelManager:
    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.served: dict[str, ServedModel] = {}
        self.states: dict[str, ModelState] = {}
        # One inference thread: sklearn holds the GIL, a second thread only adds contention.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        self._refresh_lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self.started = False
        # Set on SIGTERM (app.server.drain): every readiness answer turns false while requests
        # are still answered, so balancers take this server out before it stops.
        self.draining = threading.Event()
        self._started_event = asyncio.Event()
        self._pinned = PinnedVersions(self._load_async, settings.version_cache_size)
        self.companions = Companions(self._load_async, self._in_use)
        self._failures = LoadFailures()
        self._poll_failures = RepeatedFailureLog(log, "registry poll failed")

    # ---- lookups used by the routes --------------------------------------------------

    async def get_loaded(self, name: str, wait_s: float) -> ServedModel:
        """``get``, but while this process is still starting, wait up to ``wait_s`` for it.

        Workers share one listening socket, so a worker accepts connections while its models
        are still loading (liveness must answer); its first requests wait for the load instead
        of failing with 503 while the other workers are ready.
        """
        served = self.served.get(name)
        if served is not None:
            return served
        if not self.started:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._started_event.wait()
        return self.get(name)

    def get(self, name: str) -> ServedModel:
        served = self.served.get(name)
        if served is not None:
            return served
        state = self.states.get(name)
        if state is None:
            raise ModelNotFoundError(f"model {name!r} is not served here")
        reason = state.error or "still loading"
        raise ModelNotReadyError(f"model {name!r} is not ready: {reason}")

    async def get_version(self, name: str, version: str) -> ServedModel:
        """A specific registry version: the served one if it matches, else loaded on demand.

        On-demand versions are verified and warmed in the loader thread like any other, kept
        in an LRU cache of ``version_cache_size`` and never marked as the served version in
        ``modelserve_model_info``. Raises ModelNotFoundError for a version the registry lacks
        and RegistryError (or the load's own exception) when it cannot be loaded.
        """
        current = self.served.get(name)
        if current is not None and current.version == version:
            return current
        companion = self.companions.find(name, version)
        if companion is not None:
            return companion
        return await self._pinned.get(name, version)

    @property
    def ready(self) -> bool:
        return self.loaded and not self.draining.is_set()

    @property
    def loaded(self) -> bool:
        return self.started and all(name in self.served for name in self.states)

    def wanted(self) -> dict[str, str]:
        """Model name -> alias for every model this process should serve."""
        wanted = {self.settings.default_model: self.settings.alias}
        for name in self.registry.model_names():
            if name == self.settings.default_model:
                continue
            try:
                if PRODUCTION in self.registry.aliases(name):
                    wanted[name] = PRODUCTION
            except (RegistryError, ValueError) as exc:
                log.warning("skipping model %s: %s", name, exc)
        return wanted

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        self.started = True
        self._started_event.set()
        if self.settings.poll_interval_s > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for served in [*self.served.values(), *self._pinned.loaded()]:
            await served.close()
        await self.companions.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._loader.shutdown(wait=False, cancel_futures=True)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.refresh()
            except Exception as exc:
                self._poll_failures.failed(f"{type(exc).__name__}: {exc}")
            else:
                self._poll_failures.succeeded()

    async def refresh(self, *, force: bool = False) -> list[SwapResult]:
        """Bring every served model to the version its alias points at now.

        A version that already failed to load is retried only when ``force`` is set (an
        explicit admin reload), so a broken artifact is not reloaded and recounted every poll.
        """
        async with self._refresh_lock:
            wanted = await asyncio.get_running_loop().run_in_executor(self._loader, self.wanted)
            results = []
            for name, alias in wanted.items():
                state = self.states.setdefault(name, ModelState(alias=alias))
                result = await self._refresh_one(name, state, force=force)
                if result is not None:
                    results.append(result)
                roles = await self._roles(name, state)
                await self.companions.update(name, self.served.get(name), roles, force)
            return results

    async def _roles(self, name: str, state: ModelState) -> Roles | None:
        """The canary and shadow to serve beside production (none beside another alias)."""
        if state.alias != PRODUCTION or name not in self.served:
            return None
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._loader, RoleAliases(self.registry).read, name)
        except (RegistryError, ValueError, OSError) as exc:
            log.warning("reading the roles (canary, shadow) of %s failed: %s", name, exc)
            return None

    async def _refresh_one(
        self, name: str, state: ModelState, *, force: bool = False
    ) -> SwapResult | None:
        loop = asyncio.get_running_loop()
        current = self.served.get(name)
        try:
            version = await loop.run_in_executor(
                self._loader, self.registry.resolve, name, state.alias
            )
        except (RegistryError, ValueError, OSError) as exc:
            return self._failed(name, state, current, None, exc)
        self._failures.resolved(name)
        if current is not None and current.version == version:
            if state.fallback_from is not None:  # the alias came back to what serves
                state.wanted_version = version
                self._failures.recovered(name, state)
            return None
        if not force and state.wanted_version == version and state.error is not None:
            return None  # already failed on this exact version; wait for the alias to move
        state.wanted_version = version
        try:
            # A finished canary is already loaded and warm: it takes over as it is.
            new = self.companions.find(name, version) or await self._load_async(name, version)
        except Exception as exc:
            failed = self._failed(name, state, current, version, exc)
            if current is None:
                current = await self._fall_back(name, state, version)
            if current is not None:
                self._failures.fall_back(name, state, version)
            return failed
        await self._swap_in(name, state, current, new)
        return SwapResult(name, current.version if current else None, version)

    async def _fall_back(self, name: str, state: ModelState, broken: str) -> ServedModel | None:
        """With nothing serving (a start, a restart), the newest earlier version in the alias
        history that loads: what ``modelserve rollback`` would point at, then further back.

        A version promoted from an environment that could load it (or written by hand) must not
        make every restarted server an outage until someone rolls back.
        """
        loop = asyncio.get_running_loop()
        try:
            history = await loop.run_in_executor(self._loader, self.registry.alias_history, name)
        except (RegistryError, ValueError, OSError) as exc:
            log.error("no fallback for %s: its alias history is unreadable: %s", name, exc)
            return None
        for version in fallback_versions(history, state.alias, broken):
            try:
                served = await self._load_async(name, version)
            except Exception as exc:
                log.error("fallback of %s to version %s failed too: %s", name, version, exc)
                continue
            await self._swap_in(name, state, None, served)
            log.error(
                "serving %s version %s in place of version %s (its %s alias), which cannot be "
                "loaded: roll the alias back or fix the version",
                name,
                version,
                broken,
                state.alias,
                extra={"model": name, "version": version, "broken_version": broken},
            )
            return served
        return None

    async def _swap_in(
        self, name: str, state: ModelState, current: ServedModel | None, new: ServedModel
    ) -> None:
        version = new.version
        self.served[name] = new  # the swap: new requests see the new version from here on
        if version == state.wanted_version:
            self._failures.recovered(name, state)
        new.activate()
        production_role(current, new)
        old_version = None
        if current is not None:
            old_version = current.version
            if current.version != new.version:
                current.deactivate()
            if not self._in_use(current):
                await current.close()
        log.info(
            "serving model", extra={"model": name, "version": version, "previous": old_version}
        )

    async def _load_async(self, name: str, version: str) -> ServedModel:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._loader, self._load, name, version)

    def _in_use(self, served: ServedModel) -> bool:
        """Whether a version still answers for the model (production, canary or shadow)."""
        return any(s is served for s in self.served.values()) or self.companions.holds(served)

    def _load(self, name: str, version: str) -> ServedModel:
        return ServedModel.load(self.registry, name, version, self.settings, self._executor)

    def _failed(
        self,
        name: str,
        state: ModelState,
        current: ServedModel | None,
        version: str | None,
        exc: BaseException,
    ) -> SwapResult:
        serving = current.version if current else None
        self._failures.failed(name, state, version, exc, serving)
        return SwapResult(name, serving, version, str(exc))
