"""README "Run the full stack": the image and the compose stack on a real Docker engine (issue #15).

Not part of ``make test``: it needs root, apt and several minutes; ``make stack-test`` sets
``MODELSERVE_STACK_TEST=1`` and runs only this file. ``scripts/stack_test.py`` does the work
and prints each phase with its duration; a skip (no engine can start here) names the reason.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers.streamed import run_driver

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(
        os.environ.get("MODELSERVE_STACK_TEST") != "1", reason="run by make stack-test"
    ),
]


def test_image_and_compose_stack_on_a_real_engine() -> None:
    run_driver("scripts.stack_test", "stack-test")
