"""A registry version whose checksum is right but which no server can load: its pickle names a
class in a module that exists only while the test builds it (as a team's own module, present
on the machine that trained and registered, missing in the server's image)."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt

from app.registry.store import Registry

MISSING_MODULE = "team_features_not_installed"


def _wrapper_module() -> types.ModuleType:
    module = types.ModuleType(MISSING_MODULE)

    class Wrapped:
        """Delegates to the estimator it wraps: the model itself would score fine."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def predict(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return np.asarray(self.inner.predict(x))

    Wrapped.__module__ = MISSING_MODULE
    Wrapped.__qualname__ = "Wrapped"
    module.Wrapped = Wrapped  # type: ignore[attr-defined]
    return module


def register_unloadable(root: Path, name: str, like: str = "1") -> str:
    """A new version of ``name`` (its metadata copied from version ``like``); its number."""
    registry = Registry(root)
    source = registry.load(name, like)
    module = _wrapper_module()
    sys.modules[MISSING_MODULE] = module  # pickle finds the class by module and name
    try:
        buffer = io.BytesIO()
        joblib.dump(module.Wrapped(source.estimator), buffer)
    finally:
        del sys.modules[MISSING_MODULE]
    keep = source.metadata.model_dump(
        exclude={"name", "version", "artifact", "format", "sha256", "created_at"}
    )
    return registry.register_bytes(name, buffer.getvalue(), "joblib", keep).version
