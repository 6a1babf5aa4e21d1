"""The shutdown drain fits the compose stack: HAProxy's checks take a draining replica out well
inside ``MODELSERVE_SHUTDOWN_DRAIN_S``, and compose's grace before SIGKILL covers the drain, the
requests in flight and the workers' exit. (Kubernetes' sum: tests/deploy/test_k8s.py.)"""

from __future__ import annotations

import math
import re

import pytest
import yaml

from app.config import Settings
from scripts import stack_test_balancer as balancer
from tests.helpers.support import ROOT

EXIT_SLACK_S = 5  # as tests/deploy/test_k8s.py: time for the workers to exit


def _modelserve() -> dict[str, object]:
    service: dict[str, object] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())[
        "services"
    ]["modelserve"]
    return service


def _setting(name: str) -> float:
    env = _modelserve().get("environment") or {}
    assert isinstance(env, dict)
    variable = f"MODELSERVE_{name.upper()}"
    return float(env.get(variable, Settings.model_fields[name].default))


@pytest.mark.parametrize("backend", ["modelserve", "modelserve-grpc"])
def test_haproxy_takes_a_draining_replica_out_well_inside_the_drain(backend: str) -> None:
    inter, fastinter, fall = balancer.check_timing(backend=backend)
    assert fastinter < inter  # checks speed up once one has failed
    out_s = inter + (fall - 1) * fastinter
    assert out_s + balancer.SLACK_S < _setting("shutdown_drain_s"), (backend, out_s)


def test_compose_grace_covers_the_drain_the_requests_in_flight_and_the_exit() -> None:
    value = str(_modelserve()["stop_grace_period"])
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    needed = _setting("shutdown_drain_s") + math.ceil(_setting("request_timeout_s")) + EXIT_SLACK_S
    assert int(match[1]) >= needed, (value, needed)
