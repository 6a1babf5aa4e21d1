"""Which model POST /predict serves, decided once at start-up from the settings and registry."""

from __future__ import annotations

from app.config import Settings
from app.registry.store import Registry


class StartupError(Exception):
    """The settings cannot be served from this registry; the message says what to change."""


def choose_default_model(settings: Settings, registry: Registry) -> str:
    """The model /predict serves: the configured one, or the registry's only model.

    An unset ``MODELSERVE_MODEL`` falls back to a registry that holds one model; a name the
    registry does not have is refused at start-up rather than answered with 503 forever.
    """
    names = registry.model_names()
    configured = "default_model" in settings.model_fields_set
    if settings.default_model in names:
        return settings.default_model
    if not configured and len(names) == 1:
        return names[0]
    where = f"the registry at {registry.root}"
    if not names:
        raise StartupError(f"no models in {where}: register one (modelserve register or train)")
    hint = "set MODELSERVE_MODEL (or --model) to one of" if len(names) > 1 else "it holds"
    raise StartupError(
        f"default model {settings.default_model!r} is not in {where}; {hint}: {', '.join(names)}"
    )
