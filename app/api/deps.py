"""What the routes depend on, built once by ``create_app`` and reached through the app state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.monitoring.predlog import PredictionLog
from app.registry.store import Registry
from app.serving.explain.service import Explainers
from app.serving.manager import ModelManager
from app.serving.scoring import Inference


@dataclass(frozen=True)
class Services:
    settings: Settings
    registry: Registry
    models: ModelManager
    inference: Inference
    prediction_log: PredictionLog | None
    explainers: Explainers  # :explain's, and the attribution sampler's


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_settings(request: Request) -> Settings:
    return get_services(request).settings


def get_manager(request: Request) -> ModelManager:
    return get_services(request).models


def get_registry(request: Request) -> Registry:
    return get_services(request).registry


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ManagerDep = Annotated[ModelManager, Depends(get_manager)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
