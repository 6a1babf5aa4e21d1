"""The real ``modelserve serve`` (and ``make serve``) on a free port, driven like a user would."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.registry.store import Registry
from tests.helpers.support import ROOT, Server, free_port

pytestmark = pytest.mark.e2e

README_URL = "http://127.0.0.1:8000"


def readme_predict_curl() -> list[str]:
    """The README's ``curl ... /predict -d '{"instances"...}'`` command, as argv."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    for block in blocks:
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if (
                line.strip().startswith("curl")
                and "/predict" in line
                and '-d \'{"instances"' in line
            ):
                return shlex.split(line)
    raise AssertionError("README has no curl example for /predict with an instances body")


def run_curl(argv: list[str], base_url: str) -> Any:
    argv = [arg.replace(README_URL, base_url) for arg in argv]
    assert argv[0] == "curl" and any(arg.startswith(base_url) for arg in argv), argv
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def _json_line(line: str) -> dict[str, Any]:
    try:
        parsed: dict[str, Any] = json.loads(line)
    except ValueError:
        raise AssertionError(
            f"MODELSERVE_LOG_FORMAT=json, yet this line is not: {line!r}"
        ) from None
    return parsed


def wait_for_log(
    server: Server, predicate: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        lines = [_json_line(line) for line in server.logs().splitlines() if line.strip()]
        if predicate(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_readme_curl_request_ids_and_json_logs(
    server_factory: Callable[..., Server], registry_path: Path
) -> None:
    server = server_factory(registry_path, env={"MODELSERVE_LOG_FORMAT": "json"})
    ready = server.wait_ready(timeout=60)
    assert ready.json()["models"]["breast-cancer"] == {
        "alias": "production",
        "version": "1",
        "ready": True,
        "error": None,
    }
    assert httpx.get(server.url + "/health/live", timeout=10).status_code == 200

    # The README's curl, pasted, answers exactly what the artifact predicts in-process.
    argv = readme_predict_curl()
    body = run_curl(argv, server.url)
    instances = json.loads(argv[argv.index("-d") + 1])["instances"]
    estimator = Registry(registry_path).load("breast-cancer", "1").estimator
    rows = np.asarray(instances, dtype=np.float64)
    assert body["model"] == "breast-cancer"
    assert body["version"] == "1"
    assert body["predictions"] == estimator.predict(rows).tolist()
    assert body["probabilities"] == estimator.predict_proba(rows).tolist()
    assert len(body["prediction_ids"]) == len(instances)

    # prediction_ids: one per instance, unique across instances and requests.
    many = np.vstack([rows] * 6).tolist()
    ids: list[str] = []
    for _ in range(3):
        response = httpx.post(server.url + "/predict", json={"instances": many}, timeout=30)
        assert response.status_code == 200
        ids += response.json()["prediction_ids"]
    assert len(ids) == 18 and len(set(ids)) == 18

    # X-Request-ID: echoed when sent, generated (and distinct) when absent.
    sent = httpx.post(
        server.url + "/predict",
        json={"instances": instances},
        headers={"X-Request-ID": "e2e-req-42"},
        timeout=30,
    )
    assert sent.headers["x-request-id"] == "e2e-req-42"
    generated = [
        httpx.post(server.url + "/predict", json={"instances": instances}, timeout=30)
        for _ in range(2)
    ]
    gen_ids = [r.headers["x-request-id"] for r in generated]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in gen_ids) and gen_ids[0] != gen_ids[1]
    bad = httpx.post(server.url + "/predict", json={"instances": []}, timeout=30)
    assert bad.status_code == 422 and bad.headers["x-request-id"]

    # One JSON line per request, carrying id, model, version, instances, status, latency.
    predict_requests = 1 + 3 + 1 + 2 + 1
    lines = wait_for_log(
        server,
        lambda ls: sum(1 for line in ls if line.get("path") == "/predict") >= predict_requests,
    )
    access = [
        line
        for line in lines
        if line.get("logger") == "modelserve.access" and line["path"] == "/predict"
    ]
    assert len(access) == predict_requests
    assert len({line["request_id"] for line in access}) == predict_requests
    by_id = {line["request_id"]: line for line in access}
    tagged = by_id["e2e-req-42"]
    assert tagged["model"] == "breast-cancer" and tagged["version"] == "1"
    assert tagged["instances"] == 1 and tagged["status"] == 200
    assert isinstance(tagged["latency_ms"], float) and tagged["latency_ms"] > 0
    assert by_id[gen_ids[0]]["status"] == 200
    assert by_id[bad.headers["x-request-id"]]["status"] == 422
    assert sorted(line["instances"] for line in access if line["status"] == 200) == [
        1,
        1,
        1,
        1,
        6,
        6,
        6,
    ]


def test_make_serve_is_ready_within_60s(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "MODELSERVE_PORT": str(port),
        "MODELSERVE_POLL_INTERVAL_S": "0",
        "MODELSERVE_SHUTDOWN_DRAIN_S": "0",  # stopped below: no drain to wait for
    }
    env.pop("MODELSERVE_REGISTRY", None)  # make serve serves the repo's committed registry
    # A stale venv stamp (someone changed pyproject.toml) means make reinstalls first.
    stale = subprocess.run(["make", "-q", "install"], cwd=ROOT, env=env, check=False).returncode
    timeout = 60.0 if stale == 0 else 300.0
    log = (tmp_path / "make-serve.log").open("wb")
    proc = subprocess.Popen(
        ["make", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/health/ready"
    status = None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(url, timeout=2).status_code
                if status == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert status == 200, (tmp_path / "make-serve.log").read_text(errors="replace")
