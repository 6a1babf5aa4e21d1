"""Marks that several test modules share."""

from __future__ import annotations

import pytest

# Load-sensitive: the test saturates the CPU (a soak, thousands of requests) or what it checks
# depends on timing (queueing, draining under load). Under ``pytest -n N --dist loadgroup``
# (make test) the whole group runs on one worker, one test after another, never beside another
# member of the group.
LOAD_SENSITIVE = pytest.mark.xdist_group("load")
