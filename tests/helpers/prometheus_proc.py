"""A real ``prometheus`` binary on a free loopback port, with the project's rule files."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from tests.helpers.queries import RULE_FILES
from tests.helpers.support import Managed, free_port, stop_process

T = TypeVar("T")


class PrometheusServer(Managed):
    """Scrapes ``targets`` as job ``modelserve`` every second and evaluates rules every second."""

    def __init__(
        self, workdir: Path, targets: list[str], alert_for: dict[str, str] | None = None
    ) -> None:
        """``alert_for``: alerts whose ``for`` becomes this duration, so a test of a few seconds
        sees them firing (the rule files are copied with that one field changed)."""
        binary = shutil.which("prometheus")
        assert binary, "the apt package `prometheus` is not installed (see .ci/apt-packages.txt)"
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        workdir.mkdir(parents=True, exist_ok=True)
        rule_files = (
            [_with_for(p, alert_for, workdir) for p in RULE_FILES] if alert_for else RULE_FILES
        )
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(p) for p in rule_files],
                    "scrape_configs": [
                        {"job_name": "modelserve", "static_configs": [{"targets": targets}]}
                    ],
                }
            )
        )
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.wait_for(self._ready, timeout=60, what="prometheus ready")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.logs()}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises with Prometheus's error message if the query is invalid."""
        resp = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def values(self, expr: str, key: str) -> dict[str, float]:
        """``{label value of key: sample value}`` of an instant vector."""
        return {s["metric"].get(key, ""): float(s["value"][1]) for s in self.query(expr)}

    def alerts(self, name: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()
        return [a for a in body["data"]["alerts"] if a["labels"]["alertname"] == name]

    def wait_for(
        self, probe: Callable[[], T | None], timeout: float = 30.0, what: str = "condition"
    ) -> T:
        """Poll ``probe`` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{what} not reached in {timeout}s; prometheus log:\n{self.logs()}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def _with_for(rules: Path, alert_for: dict[str, str], workdir: Path) -> Path:
    """A copy of a rule file in ``workdir`` with the named alerts' ``for`` replaced (the file
    itself when there are none)."""
    if not alert_for:
        return rules
    groups = yaml.safe_load(rules.read_text())
    for group in groups["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in alert_for:
                rule["for"] = alert_for[rule["alert"]]
    copy = workdir / f"rules-{rules.name}"
    copy.write_text(yaml.safe_dump(groups))
    return copy
