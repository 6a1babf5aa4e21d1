"""GET /models and GET /models/{name}: what the registry holds and what is served."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import ManagerDep, RegistryDep
from app.errors import ErrorReason, RequestError
from app.registry.store import ModelNotFoundError, Registry, RegistryError
from app.serving.manager import ModelManager

router = APIRouter(prefix="/models", tags=["models"])


def _summary(registry: Registry, manager: ModelManager, name: str) -> dict[str, Any]:
    served = manager.served.get(name)
    return {
        "name": name,
        "versions": registry.versions(name),
        "aliases": registry.aliases(name),
        "served_version": served.version if served else None,
        # compiled-trees, one-pass-linear or scikit-learn: settled by the load-time probes
        "scorer": served.scorer if served else None,
        # compiled, one-pass-linear or scikit-learn: what runs a pipeline's transforming
        # steps on typed rows (None: no such steps, or nothing served)
        "transform": served.transform if served else None,
    }


@router.get("", summary="Every model in the registry")
async def list_models(registry: RegistryDep, manager: ManagerDep) -> dict[str, Any]:
    models = []
    for name in registry.model_names():
        try:
            models.append(_summary(registry, manager, name))
        except RegistryError:
            continue
    return {"models": models}


@router.get("/{name}", summary="Versions, aliases, metadata, metrics and feature schema")
async def get_model(name: str, registry: RegistryDep, manager: ManagerDep) -> dict[str, Any]:
    try:
        summary = _summary(registry, manager, name)
        versions = []
        for version in summary["versions"]:
            meta = registry.metadata(name, version)
            versions.append(meta.model_dump(mode="json", exclude={"reference", "background"}))
    except ModelNotFoundError as exc:
        raise RequestError(ErrorReason.UNKNOWN_MODEL, str(exc), field="name") from None
    return {**summary, "alias_history": registry.alias_history(name), "metadata": versions}
