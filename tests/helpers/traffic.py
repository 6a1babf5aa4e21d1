"""``modelserve simulate`` in the background for as long as a test needs traffic with labels."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from tests.helpers.support import MODELSERVE, stop_process


@contextmanager
def simulated(url: str, rate: float, feedback_delay: float) -> Iterator[None]:
    """Predictions at ``rate``/s and their true labels ``feedback_delay`` s later, until exit."""
    traffic = subprocess.Popen(
        [MODELSERVE, "simulate", "--url", url, "--rate", str(rate), "--duration", "900",
         "--feedback-delay", str(feedback_delay)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield
    finally:
        stop_process(traffic)
