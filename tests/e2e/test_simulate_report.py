"""docs/guide/monitoring.md, "Traffic simulator": `modelserve simulate` reports the rate it really
sent at and shows progress (issue #15).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.support import Server, run_cli

pytestmark = pytest.mark.e2e


def test_rate_excludes_the_feedback_delay_and_progress_is_printed(
    server_factory: Callable[..., Server], registry_path: Path
) -> None:
    server = server_factory(registry_path)
    server.wait_ready()
    result = run_cli(
        "simulate", "--url", server.url, "--rate", "20", "--duration", "4",
        "--feedback-delay", "3", "--progress-every", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    rate = re.search(r"predictions\s+\d+ ok of (\d+) \(([\d.]+)/s\)", result.stdout)
    assert rate, result.stdout
    # Counting the 3 s feedback delay as run time would report about 20 * 4 / 7 = 11.4/s.
    assert 17.0 <= float(rate.group(2)) <= 21.0, result.stdout
    progress = [line for line in result.stderr.splitlines() if line.startswith("progress")]
    assert len(progress) >= 4, result.stderr
    assert all(re.search(r"sent \d+ \([\d.]+/s\), ok \d+, errors \d+, labels sent \d+", line)
               for line in progress)  # fmt: skip
    last = progress[-1]
    assert int(re.search(r"labels sent (\d+)", last).group(1)) > 0, progress  # type: ignore[union-attr]
