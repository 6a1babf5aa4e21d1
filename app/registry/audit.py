"""``modelserve verify``: every version's checksum and every alias's target, checked offline."""

from __future__ import annotations

from app.registry.errors import RegistryError
from app.registry.store import Registry

Finding = tuple[str, str, str | None]
"""``(model, version_or_alias, error)``; error None means the check passed."""


def verify_all(registry: Registry, names: list[str] | None = None) -> list[Finding]:
    """One finding per version and per alias pointing at a missing version, of ``names``
    (default: every model)."""
    results: list[Finding] = []
    for name in names or registry.model_names():
        try:
            versions = registry.versions(name)
            aliases = registry.aliases(name)
        except (RegistryError, ValueError) as exc:
            results.append((name, "-", f"unreadable: {exc}"))
            continue
        for version in versions:
            try:
                registry.verify(name, version)
                results.append((name, version, None))
            except (RegistryError, ValueError) as exc:
                results.append((name, version, str(exc)))
        for alias, version in sorted(aliases.items()):
            if version not in versions:
                results.append((name, alias, f"alias points at missing version {version}"))
    return results
