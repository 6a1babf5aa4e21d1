"""The compose stack's alert receiver: Alertmanager's webhook URLs resolve to it, and it prints."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from urllib.parse import urlparse

import httpx
import pytest
import yaml

from tests.helpers.support import ROOT, free_port


def test_every_alertmanager_webhook_points_at_a_compose_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    config = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    hosts = {
        urlparse(hook["url"]).hostname
        for receiver in config["receivers"]
        for hook in receiver.get("webhook_configs", [])
    }
    assert hosts, "no webhook receivers configured"
    assert hosts <= set(compose["services"]), f"webhook hosts {hosts} are not compose services"
    sink = compose["services"]["alert-webhook"]
    assert "app.tools.alertsink" in sink["command"]


@pytest.mark.e2e  # the sink is a real server process
def test_sink_prints_each_notification_and_answers_health_checks() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.tools.alertsink", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(url + "/health/ready", timeout=2).status_code == 200
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        notification = {
            "status": "firing",
            "receiver": "pager",
            "alerts": [{"labels": {"alertname": "ModelserveDown", "severity": "critical"}}],
        }
        response = httpx.post(url + "/pager", json=notification, timeout=5)
        assert response.status_code == 200
        assert httpx.post(url + "/pager", content=b"not json", timeout=5).status_code == 400
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines == [{"receiver_path": "/pager", "notification": notification}]
