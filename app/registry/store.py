"""The on-disk model registry: ``<root>/<name>/<version>/`` directories plus ``aliases.json``.

Layout::

    <root>/<name>/aliases.json            {"aliases": {...}, "history": [...]}
    <root>/<name>/<version>/model.joblib  the artifact (a pickle: verified before loading)
    <root>/<name>/<version>/model.skops   or: the artifact in skops format (no pickle)
    <root>/<name>/<version>/metadata.json ModelMetadata

Every write goes to a temporary file or directory first and is renamed into place under a
file lock, so readers never see half a version and concurrent CLIs never lose an update.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from app.registry import artifacts, names
from app.registry.aliases import read_doc, record_move, rollback_target, write_doc
from app.registry.artifacts import ARTIFACT_NAMES, ArtifactFormat
from app.registry.errors import (
    ChecksumMismatchError,
    IncompatibleVersionError,
    ModelNotFoundError,
    RegistryError,
    RegistryNotWritableError,
    UnsafeArtifactError,
)
from app.registry.integrity import check_sklearn_version, sha256_of, verified_bytes
from app.registry.metadata import ModelMetadata

__all__ = [
    "ALIASES_FILE", "LOCK_FILE", "METADATA_FILE", "ChecksumMismatchError",
    "IncompatibleVersionError", "LoadedArtifact", "ModelNotFoundError", "Registry",
    "RegistryError", "RegistryNotWritableError", "UnsafeArtifactError",
    "check_sklearn_version", "sha256_of",
]  # fmt: skip

ALIASES_FILE = "aliases.json"
METADATA_FILE = "metadata.json"
LOCK_FILE = ".lock"
ExtraFiles = dict[str, str] | Callable[[str], dict[str, str]] | None
LoadCheck = Callable[[Path, str, str], None]  # (root, name, version); raises RegistryError
Annotate = Callable[[Any, ModelMetadata], ModelMetadata]  # (estimator, new version); never raises


@dataclass(frozen=True)
class LoadedArtifact:
    metadata: ModelMetadata
    estimator: Any
    path: Path


class Registry:
    """``load_check`` (the CLI's loads the version in a fresh process) runs before any alias is
    pointed at a version, so none moves to a version a restarted server could not serve.
    ``annotate`` adds facts of its estimator to a new version (the CLI's: what drives it)."""

    def __init__(
        self, root: Path, *, load_check: LoadCheck | None = None, annotate: Annotate | None = None
    ) -> None:
        self.root = Path(root)
        self._load_check = load_check
        self._annotate = annotate

    # ---- reading -------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def model_dir(self, name: str) -> Path:
        path = self.root / names.checked_name(name)  # before any filesystem call
        if not path.is_dir():
            raise ModelNotFoundError(f"model {name!r} is not in the registry at {self.root}")
        return path

    def versions(self, name: str) -> list[str]:
        model_dir = self.model_dir(name)
        found = [
            p.name
            for p in model_dir.iterdir()
            if p.is_dir() and p.name.isdigit() and (p / METADATA_FILE).is_file()
        ]
        return sorted(found, key=int)

    def metadata(self, name: str, version: str) -> ModelMetadata:
        path = self.model_dir(name) / names.checked_version(str(version)) / METADATA_FILE
        if not path.is_file():
            raise ModelNotFoundError(f"model {name!r} has no version {version!r}")
        return ModelMetadata.model_validate_json(path.read_bytes())

    def _aliases_doc(self, name: str) -> dict[str, Any]:
        return read_doc(self.model_dir(name) / ALIASES_FILE)

    def aliases(self, name: str) -> dict[str, str]:
        return {k: str(v) for k, v in self._aliases_doc(name)["aliases"].items()}

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        history: list[dict[str, Any]] = self._aliases_doc(name)["history"]
        return history

    def resolve(self, name: str, alias_or_version: str) -> str:
        """A version number for an alias (or a version given directly)."""
        if alias_or_version.isdigit():
            if alias_or_version not in self.versions(name):
                raise ModelNotFoundError(f"model {name!r} has no version {alias_or_version!r}")
            return alias_or_version
        aliases = self.aliases(name)
        if alias_or_version not in aliases:
            raise ModelNotFoundError(f"model {name!r} has no alias {alias_or_version!r}")
        return aliases[alias_or_version]

    def _verified(self, name: str, version: str) -> tuple[ModelMetadata, Path, bytes]:
        meta = self.metadata(name, version)
        artifact = self.model_dir(name) / version / meta.artifact
        return meta, artifact, verified_bytes(artifact, meta.sha256)

    def verify(self, name: str, version: str) -> ModelMetadata:
        """The metadata of a version whose artifact matches its recorded sha256."""
        meta, artifact, data = self._verified(name, version)
        if meta.format == "skops":  # promote and verify refuse what the server would refuse
            try:
                artifacts.skops_trusted_types(data, str(artifact))
            except artifacts.ArtifactError as exc:
                raise UnsafeArtifactError(str(exc)) from None
        return meta

    def load(self, name: str, version: str) -> LoadedArtifact:
        """Verify, then load. The bytes hashed are the bytes loaded (no swap in between)."""
        meta, artifact, data = self._verified(name, version)
        check_sklearn_version(meta.sklearn_version)
        try:
            estimator = artifacts.load(data, meta.format, str(artifact))
        except artifacts.ArtifactError as exc:
            raise UnsafeArtifactError(str(exc)) from None
        return LoadedArtifact(metadata=meta, estimator=estimator, path=artifact)

    def check_loadable(self, name: str, version: str) -> None:
        """Checksum, then the load check if any (RegistryError). Run before taking the writer
        lock: a load takes seconds, and concurrent CLIs must not queue behind it."""
        self.verify(name, version)
        if self._load_check is not None:
            self._load_check(self.root, name, version)

    def checked_again(self, name: str, ref: str, checked: str) -> str:
        """Under the lock: ``ref`` resolved again; checked too if it moved since ``checked``."""
        version = self.resolve(name, ref)
        if version != checked:
            self.check_loadable(name, version)
        return version

    # ---- writing -------------------------------------------------------------------------

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the model's writer lock; a filesystem error while writing is a RegistryError.

        A read-only or full registry is an operator's problem to fix, not a crash: the CLI
        reports it as one line naming the path instead of a traceback.
        """
        model_dir = self.root / names.checked_name(name)
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
            with FileLock(str(model_dir / LOCK_FILE), timeout=60):
                yield
        except OSError as exc:
            where = exc.filename or model_dir
            raise RegistryNotWritableError(
                f"cannot update the registry at {where}: {exc.strerror or exc}"
            ) from None

    def register(
        self,
        name: str,
        estimator: Any,
        metadata: dict[str, Any],
        extra_files: ExtraFiles = None,
        fmt: ArtifactFormat = "joblib",
    ) -> ModelMetadata:
        """A new immutable version of ``estimator`` dumped as ``fmt``; returns its metadata."""
        return self._add_version(
            name, fmt, metadata, extra_files, lambda p: artifacts.dump(estimator, p, fmt), estimator
        )

    def register_bytes(
        self,
        name: str,
        data: bytes,
        fmt: ArtifactFormat,
        metadata: dict[str, Any],
        extra_files: ExtraFiles = None,
        estimator: Any = None,  # the bytes loaded, for ``annotate``
    ) -> ModelMetadata:
        """``register`` for bytes serialized elsewhere (``modelserve register``), kept unchanged
        so the sha256 recorded is of the file its owner made; skops must pass the trust check.
        """
        if fmt == "skops":
            try:
                artifacts.skops_trusted_types(data, f"{name} artifact")
            except artifacts.ArtifactError as exc:
                raise UnsafeArtifactError(str(exc)) from None
        return self._add_version(
            name, fmt, metadata, extra_files, lambda p: p.write_bytes(data), estimator
        )

    def _add_version(
        self,
        name: str,
        fmt: ArtifactFormat,
        metadata: dict[str, Any],
        extra_files: ExtraFiles,
        write_artifact: Callable[[Path], object],
        estimator: Any = None,
    ) -> ModelMetadata:
        """Build the version under a hidden temporary name and rename it in: a crash leaves at
        most an invisible ``.tmp-*`` directory (swept by the next register). ``extra_files``
        may be a function of the new version number (a model card naming it)."""
        with self.lock(name):
            model_dir = self.root / name
            self._sweep_staging(model_dir)
            taken = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()]
            version = str(max(taken, default=0) + 1)
            staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=".tmp-"))
            try:
                artifact = staging / ARTIFACT_NAMES[fmt]
                write_artifact(artifact)
                fields = {
                    "created_at": datetime.now(UTC),
                    **metadata,
                    "name": name,
                    "version": version,
                    "artifact": artifact.name,
                    "format": fmt,
                    "sha256": sha256_of(artifact),
                }
                meta = ModelMetadata.model_validate(fields)
                if self._annotate is not None and estimator is not None:
                    meta = self._annotate(estimator, meta)
                (staging / METADATA_FILE).write_text(meta.model_dump_json(indent=2) + "\n")
                files = extra_files(version) if callable(extra_files) else extra_files
                for filename, text in (files or {}).items():
                    (staging / filename).write_text(text)
                os.chmod(staging, 0o755)  # noqa: S103 - versions are world-readable, like git objects
                os.rename(staging, model_dir / version)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            return meta

    def set_alias(self, name: str, alias: str, version: str, *, reason: str = "promote") -> None:
        """Point ``alias`` at ``version`` (verified first), recording the change in history."""
        self.check_loadable(name, version)
        with self.lock(name):
            self._set_alias_locked(name, alias, version, reason=reason)

    def _set_alias_locked(self, name: str, alias: str, version: str, *, reason: str) -> None:
        self.verify(name, version)
        doc = self._aliases_doc(name)
        record_move(doc, alias, version, reason=reason)
        write_doc(self.root / name / ALIASES_FILE, doc)

    def rollback(self, name: str, alias: str = "production") -> tuple[str, str]:
        """Point ``alias`` back at the version it had before the current one; repeated rollbacks
        walk further back (``aliases.alias_stack``). Returns ``(from_version, to_version)``."""
        checked = rollback_target(self.alias_history(name), alias)
        if checked is not None:
            self.check_loadable(name, checked)
        with self.lock(name):
            current = self.aliases(name).get(alias)
            target = rollback_target(self.alias_history(name), alias)
            if target is not None and target != checked:
                self.check_loadable(name, target)
            if current is None or target is None:
                raise RegistryError(
                    f"model {name!r}: alias {alias!r} has no earlier version to roll back to"
                )
            self._set_alias_locked(name, alias, target, reason="rollback")
            return current, target

    @staticmethod
    def _sweep_staging(model_dir: Path) -> None:
        """Remove staging left by a killed writer; only called with the lock held."""
        for stale in model_dir.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for stale in model_dir.glob(f".{ALIASES_FILE}.*.tmp"):
            stale.unlink(missing_ok=True)
