"""The stack test's stop under load (``make stack-test``, ``scripts/stack_test_balancer.py``) in
miniature on loopback: two ``modelserve serve`` processes behind a real HAProxy configured from
the committed ``deploy/haproxy/haproxy.cfg`` (its checks, fastinter and retries), c=16 clients
posting predictions through it, and one server (two workers) sent SIGTERM. It drains, HAProxy
takes it out on its failing checks well inside the drain, it exits 0, and not one request
fails or gets another answer than the model's own.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from scripts import stack_test_balancer as balancer
from scripts.stack_test_engine import example_and_truth
from tests.helpers.haproxy import HAProxy
from tests.helpers.marks import LOAD_SENSITIVE
from tests.helpers.support import Server, copy_registry, wait_all_workers_ready

pytestmark = [
    pytest.mark.e2e,
    LOAD_SENSITIVE,
    pytest.mark.skipif(
        shutil.which("haproxy") is None,
        reason="haproxy is not installed (apt-get install haproxy; .ci/apt-packages.txt has it)",
    ),
]


def test_sigterm_behind_haproxy_under_c16_fails_no_request(tmp_path: Path) -> None:
    registry = copy_registry(tmp_path / "models")
    example, truth = example_and_truth()
    drain_s = balancer.DRAIN_S  # the default, which the compose stack runs with

    def env(name: str, drain: float) -> dict[str, str]:
        return {
            "MODELSERVE_POLL_INTERVAL_S": "0",
            "MODELSERVE_SHUTDOWN_DRAIN_S": str(drain),
            "MODELSERVE_PREDICTION_LOG": str(tmp_path / f"{name}.db"),
        }

    victim = Server(registry, workdir=tmp_path, env=env("victim", drain_s), args=("--workers", "2"))
    other = Server(registry, workdir=tmp_path, env=env("other", 0))
    with victim, other:
        victim.wait_ready()
        other.wait_ready()
        wait_all_workers_ready(victim.url)
        assert victim.proc is not None
        proc = victim.proc

        def stop() -> balancer.Stopped:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(drain_s + 30)
            return balancer.Stopped(
                time.monotonic(), code, "SIGTERM to `modelserve serve --workers 2`"
            )

        with HAProxy(tmp_path, {"victim": victim.port, "other": other.port}) as lb:
            lb.wait_up(2)
            lines = balancer.stop_under_load(
                lb.api_url, lb.stats_url, "victim", stop, {"instances": [example]}, truth, drain_s
            )
    print("\n".join(lines))
