"""Every way a registry operation fails, as one hierarchy callers can catch at its base.

Kept apart from the store so modules that only check artifacts (``integrity``) raise the same
classes without importing the store itself.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every registry failure; the message is meant for humans."""


class ModelNotFoundError(RegistryError):
    pass


class ChecksumMismatchError(RegistryError):
    pass


class IncompatibleVersionError(RegistryError):
    pass


class RegistryNotWritableError(RegistryError):
    """A write failed at the filesystem: read-only, no permission, disk full."""


class UnsafeArtifactError(RegistryError):
    """A skops artifact names types outside the allow-list, or is not a skops file."""


class VersionNotLoadableError(RegistryError):
    """The version's checksum is right but it cannot be loaded and score its own example in a
    fresh server process (a module the pickle needs is missing, its library is too old...)."""
