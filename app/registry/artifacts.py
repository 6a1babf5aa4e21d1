"""Artifact formats: ``model.joblib`` (a pickle) and ``model.skops`` (no pickle, typed).

A pickle runs code when it is loaded, so its only protection is the sha256 check. A skops
file is a zip of JSON describing the objects; ``skops.io.get_untrusted_types`` lists the types
it would build without running any of them, and loading builds only the types it is told to
trust. The trusted list is never "whatever the file asks for": every type the file names must
be a class defined by the installed scikit-learn, otherwise the artifact is refused.
"""

from __future__ import annotations

import importlib
import io
import re
from pathlib import Path
from typing import Any, Literal

import joblib

ArtifactFormat = Literal["joblib", "skops"]
FORMATS: tuple[ArtifactFormat, ...] = ("joblib", "skops")
ARTIFACT_NAMES: dict[ArtifactFormat, str] = {"joblib": "model.joblib", "skops": "model.skops"}

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class ArtifactError(Exception):
    """The artifact cannot be loaded safely; the message is meant for humans."""


class UntrustedArtifactError(ArtifactError):
    """The artifact names types outside the allow-list; nothing in it was loaded."""


def _is_sklearn_class(type_name: str) -> bool:
    """True for ``sklearn.<module>.<Class>`` naming a class scikit-learn itself defines.

    Importing the named sklearn module runs only installed scikit-learn code, never anything
    from the artifact. Functions are refused (a function in a model is called at predict
    time), and so are names re-exported from elsewhere (the class must say it is sklearn's).
    """
    if not type_name.startswith("sklearn.") or not _DOTTED.match(type_name):
        return False
    module_name, _, attr = type_name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return False
    return isinstance(obj, type) and obj.__module__ == module_name and obj.__qualname__ == attr


def skops_trusted_types(data: bytes, source: str) -> list[str]:
    """The explicit trusted list for ``skops.io.loads``, or refuse the artifact.

    Raises ``UntrustedArtifactError`` naming every type that is not a scikit-learn class,
    ``ArtifactError`` if the bytes are not a skops file.
    """
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # zipfile/JSON errors of a damaged file, whatever their class
        raise ArtifactError(f"{source}: not a readable skops file: {exc}") from None
    refused = sorted(t for t in untrusted if not _is_sklearn_class(t))
    if refused:
        raise UntrustedArtifactError(
            f"{source}: skops artifact contains types outside the allow-list: "
            f"{', '.join(refused)}; refusing to load (nothing was executed)"
        )
    return list(untrusted)


def dump(estimator: Any, path: Path, fmt: ArtifactFormat) -> None:
    if fmt == "skops":
        import skops.io

        skops.io.dump(estimator, path)
        skops_trusted_types(path.read_bytes(), str(path))  # never register what we cannot load
    else:
        joblib.dump(estimator, path)


def load(data: bytes, fmt: ArtifactFormat, source: str) -> Any:
    """Build the estimator from artifact bytes already checked against their sha256."""
    if fmt == "skops":
        import skops.io

        trusted = skops_trusted_types(data, source)
        try:
            return skops.io.loads(data, trusted=trusted)
        except Exception as exc:  # a damaged file past its schema; never a half-built model
            raise ArtifactError(f"{source}: cannot load skops artifact: {exc}") from None
    return joblib.load(io.BytesIO(data))
