"""A type no allow-list trusts, whose import and construction leave marks on disk.

Smuggled into a skops artifact, it shows whether loading runs the artifact's code: the file
named by ``$PAYLOAD_MARKER_ENV`` gets a line when this module is imported and when an
instance is rebuilt (``__setstate__``), in whichever process does it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MARKER_ENV = "MODELSERVE_TEST_PAYLOAD_MARKER"


def _mark(event: str) -> None:
    marker = os.environ.get(MARKER_ENV)
    if marker:
        with Path(marker).open("a") as fh:
            fh.write(event + "\n")


_mark("imported")


class Payload:
    def __init__(self) -> None:
        self.command = "echo pwned"

    def __setstate__(self, state: dict[str, Any]) -> None:
        _mark("rebuilt")
        self.__dict__.update(state)
