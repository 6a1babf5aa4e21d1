"""Who answers for a model: production, a weighted canary and a shadow, kept in ``aliases.json``.

A canary is the ``canary`` alias plus its weight (percent of the production alias's requests)
under ``weights``; a shadow is the ``shadow`` alias (it scores every production row off the
request path and answers no one). Every change appends to the alias history with its reason, so
``modelserve rollback`` and an audit read one file. Servers poll the file, so a change reaches
every worker and replica without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.registry.aliases import read_doc, record_move, write_doc
from app.registry.store import ALIASES_FILE, Registry, RegistryError

PRODUCTION = "production"
CANARY = "canary"
SHADOW = "shadow"
ROLES = (PRODUCTION, CANARY, SHADOW)


@dataclass(frozen=True)
class Roles:
    production: str | None
    canary: str | None
    canary_percent: float
    shadow: str | None

    @property
    def canary_share(self) -> float:
        """The canary's share of requests, 0..1 (0 when there is no canary)."""
        return self.canary_percent / 100 if self.canary is not None else 0.0


def from_doc(doc: dict[str, Any]) -> Roles:
    """The roles an aliases document gives (pure; no registry needed)."""
    aliases = doc.get("aliases", {})
    canary = aliases.get(CANARY)
    percent = float(doc.get("weights", {}).get(CANARY, 0.0)) if canary is not None else 0.0
    shadow = aliases.get(SHADOW)
    return Roles(
        production=None if aliases.get(PRODUCTION) is None else str(aliases[PRODUCTION]),
        canary=None if canary is None else str(canary),
        canary_percent=percent,
        shadow=None if shadow is None else str(shadow),
    )


def record_removal(doc: dict[str, Any], alias: str, *, reason: str) -> str | None:
    """Drop ``alias`` from ``doc`` and log it in the history; the version it had, if any."""
    previous = doc["aliases"].pop(alias, None)
    doc.setdefault("weights", {}).pop(alias, None)
    if previous is not None:
        doc["history"].append(
            {
                "alias": alias,
                "version": None,
                "previous": previous,
                "at": datetime.now(UTC).isoformat(),
                "reason": reason,
            }
        )
    return None if previous is None else str(previous)


def check_percent(percent: float) -> float:
    if not 0 < percent <= 100:
        raise ValueError(f"canary weight must be a percentage in (0, 100], got {percent:g}")
    return float(percent)


class RoleAliases:
    """Canary and shadow moves on one registry, each under the model's writer lock."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def read(self, name: str) -> Roles:
        return from_doc(self._doc(name))

    def start_canary(self, name: str, version: str, percent: float, *, reason: str) -> Roles:
        """Send ``percent`` % of production's requests to ``version`` (or change the weight)."""
        percent = check_percent(percent)
        checked = self.registry.resolve(name, version)
        self.registry.check_loadable(name, checked)
        with self.registry.lock(name):
            version = self.registry.checked_again(name, version, checked)
            doc = self._doc(name)
            production = doc["aliases"].get(PRODUCTION)
            if production is None:
                raise RegistryError(f"model {name!r} has no production version to canary against")
            if str(production) == version:
                raise RegistryError(f"version {version} of {name!r} is already production")
            self.registry.verify(name, version)
            record_move(doc, CANARY, version, reason=reason)
            doc.setdefault("weights", {})[CANARY] = percent
            doc["history"][-1]["weight"] = percent
            self._write(name, doc)
            return from_doc(doc)

    def end_canary(self, name: str, *, reason: str) -> str | None:
        """Stop the canary; production is untouched. The canary's version, None if none ran."""
        with self.registry.lock(name):
            doc = self._doc(name)
            ended = record_removal(doc, CANARY, reason=reason)
            if ended is not None:
                self._write(name, doc)
            return ended

    def promote(self, name: str, version: str, *, reason: str = "promote") -> str | None:
        """Point production at ``version`` and end any canary, in one write.

        Returns the production version before. Promoting the canary's version is how a canary
        finishes (history reason ``canary-finished``).
        """
        checked = self.registry.resolve(name, version)
        self.registry.check_loadable(name, checked)
        with self.registry.lock(name):
            version = self.registry.checked_again(name, version, checked)
            doc = self._doc(name)
            before = doc["aliases"].get(PRODUCTION)
            canary = doc["aliases"].get(CANARY)
            if canary is not None:
                finished = str(canary) == version
                record_removal(doc, CANARY, reason="canary-finished" if finished else reason)
            if doc["aliases"].get(SHADOW) is not None and str(doc["aliases"][SHADOW]) == version:
                record_removal(doc, SHADOW, reason="promoted")
            record_move(doc, PRODUCTION, version, reason=reason)
            self._write(name, doc)
            return None if before is None else str(before)

    def set_shadow(self, name: str, version: str | None, *, reason: str = "shadow") -> str | None:
        """Shadow ``version`` behind production (None: stop). The shadow version before."""
        checked = None if version is None else self.registry.resolve(name, version)
        if checked is not None:
            self.registry.check_loadable(name, checked)
        with self.registry.lock(name):
            doc = self._doc(name)
            before = doc["aliases"].get(SHADOW)
            if version is None or checked is None:
                record_removal(doc, SHADOW, reason=reason)
            else:
                version = self.registry.checked_again(name, version, checked)
                if str(doc["aliases"].get(PRODUCTION)) == version:
                    raise RegistryError(f"version {version} of {name!r} is production already")
                record_move(doc, SHADOW, version, reason=reason)
            self._write(name, doc)
            return None if before is None else str(before)

    def _doc(self, name: str) -> dict[str, Any]:
        doc = read_doc(self.registry.model_dir(name) / ALIASES_FILE)
        doc.setdefault("weights", {})
        return doc

    def _write(self, name: str, doc: dict[str, Any]) -> None:
        write_doc(self.registry.model_dir(name) / ALIASES_FILE, doc)
