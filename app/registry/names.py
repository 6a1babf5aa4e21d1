"""What a model name and a version number may be: the one rule every way in enforces.

A name is 1 to ``MAX_NAME_LENGTH`` ASCII letters, digits, ``_``, ``.`` and ``-``, starting with
a letter or digit; a version is a positive decimal number of at most ``MAX_VERSION_DIGITS``
digits. Both become directory names in the registry and label values in /metrics, so anything
else (a path separator, a leading dot, control bytes, a name longer than a filesystem allows) is
refused before either sees it: the registry's path builder calls ``checked_name`` and
``checked_version``, and so do ``modelserve train`` and ``register`` through it.
"""

from __future__ import annotations

import re

from app.registry.errors import ModelNotFoundError

MAX_NAME_LENGTH = 128
MAX_VERSION_DIGITS = 9
NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME_LENGTH - 1}}}$"
VERSION_PATTERN = rf"^[1-9][0-9]{{0,{MAX_VERSION_DIGITS - 1}}}$"
_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)
_SHOWN = 64  # characters of a refused value quoted back in a message


class InvalidNameError(ModelNotFoundError):
    """A name or version outside the pattern: no such model can exist, so reads say not found."""


def _shown(value: str) -> str:
    return repr(value[:_SHOWN]) + (f"... ({len(value)} characters)" if len(value) > _SHOWN else "")


def valid_name(name: str) -> bool:
    # fullmatch: with match, "$" would also accept a trailing newline.
    return _NAME.fullmatch(name) is not None


def valid_version(version: str) -> bool:
    return _VERSION.fullmatch(version) is not None


def checked_name(name: str) -> str:
    if not valid_name(name):
        raise InvalidNameError(
            f"model name {_shown(name)} is not valid: 1 to {MAX_NAME_LENGTH} letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    return name


def checked_version(version: str) -> str:
    if not valid_version(version):
        raise InvalidNameError(
            f"version {_shown(version)} is not valid: a number from 1, at most "
            f"{MAX_VERSION_DIGITS} digits"
        )
    return version
