"""Whether an artifact may be loaded: its sha256 against the record, its scikit-learn version.

A joblib artifact is a pickle, so the checksum is its only protection. ``verified_bytes``
returns the very bytes it hashed: loading those (rather than re-reading the file) leaves no
window in which the file could be swapped between the check and the unpickling.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import sklearn

from app.registry.errors import ChecksumMismatchError, IncompatibleVersionError

# Named after the module this check came from: operators filter logs by that name.
log = logging.getLogger(__name__)


def sha256_of(path: Path) -> str:
    """The file's sha256, read in chunks (used when writing, where nothing is loaded)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_bytes(artifact: Path, expected_sha256: str) -> bytes:
    """The artifact's content, provided it exists and hashes to ``expected_sha256``."""
    if not artifact.is_file():
        raise ChecksumMismatchError(f"{artifact}: artifact file is missing")
    data = artifact.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ChecksumMismatchError(
            f"{artifact}: sha256 {actual} does not match the registry record "
            f"{expected_sha256}; refusing to load"
        )
    return data


def check_sklearn_version(recorded: str, installed: str = sklearn.__version__) -> None:
    """Refuse a different major version of scikit-learn; warn on a different minor one."""
    rec = recorded.split(".")
    ins = installed.split(".")
    if rec[0] != ins[0]:
        raise IncompatibleVersionError(
            f"model was trained with scikit-learn {recorded}, installed is {installed}: "
            "major versions differ, refusing to load"
        )
    if rec[:2] != ins[:2]:
        log.warning(
            "model trained with scikit-learn %s, installed %s: minor versions differ",
            recorded,
            installed,
        )
