"""``make stack-test``: build the image and bring the compose stack up on a real Docker engine.

Phases (each timed): engine (packages, dockerd, compose plugin), stand-in base images, the
image from the Dockerfile unmodified, the container alone (read-only, HEALTHCHECK healthy,
a correct prediction), then the compose stack without Grafana (not packaged, no image
reachable): ``haproxy -c`` on the balancer's config; with 127.0.0.1:8000 held by a program
outside Docker, ``compose up`` failing with the engine's error, then up on
``MODELSERVE_HOST_PORT`` (a free port) with the artifact's prediction through HAProxy, which
runs as non-root; three replicas UP in HAProxy and in Prometheus (each replica's ``up`` and
the ``haproxy`` job's), 300 fresh connections reaching all three; one replica stopped
(``docker stop``, SIGTERM) under c=16 load through the balancer failing no request, every
answer exact: it drains (``/health/ready`` 503, still serving), HAProxy takes it out on its
checks within about 1.3 s, well inside the drain, and it exits 0 after; demo traffic filling
the accuracy and PSI series, ModelserveDown reaching alert-webhook, a restarted balancer
finding the replicas again by DNS, a restart of the replicas that loses no acknowledged
feedback, and ``docker compose down -v``. Everything it creates carries the label
``org.modelserve.stack-test`` or the project name ``modelserve-stack-test``, and only that is
removed. Exit 0 on success or on a skip (the reason printed first), 1 on a failure.
Run: ``python -m scripts.stack_test [--keep-engine]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import httpx

from scripts import stack_test_compose as stack
from scripts.stack_test_engine import (
    LABEL,
    ROOT,
    Engine,
    NoEngineError,
    build_stand_ins,
    example_and_truth,
    install_packages,
    link_compose_plugin,
    run,
    wait_until,
)

IMAGE = "modelserve:stack-test"
CONTAINER = "modelserve-stack-test-alone"


def build_image() -> str:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    proc = subprocess.run(
        ["docker", "build", "--label", f"{LABEL}=1", "-t", IMAGE, "."],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise AssertionError(f"docker build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    # The image this build replaced, now untagged; only ours carry the label.
    run("docker", "image", "prune", "-f", "--filter", f"label={LABEL}=1", check=False)
    return f"built {IMAGE} from the Dockerfile unmodified"


def check_container() -> str:
    """The image alone, as the README runs it: read-only, /tmp a tmpfs, healthy, predicting."""
    run("docker", "rm", "-f", "-v", CONTAINER, check=False)  # -v: its /app/data volume
    run(
        "docker",
        "run",
        "-d",
        "--name",
        CONTAINER,
        "--label",
        f"{LABEL}=1",
        "--read-only",
        "--tmpfs",
        "/tmp",  # noqa: S108 (inside the container)
        "-p",
        "127.0.0.1::8000",
        IMAGE,
    )
    try:
        started = time.monotonic()

        def health() -> bool:
            state = run("docker", "inspect", "-f", "{{.State.Health.Status}}", CONTAINER).stdout
            if state.strip() == "unhealthy":
                raise AssertionError(
                    "container unhealthy: " + run("docker", "logs", CONTAINER).stderr
                )
            return state.strip() == "healthy"

        wait_until("HEALTHCHECK healthy", health, 90, every=1)
        ready_s = time.monotonic() - started
        port = run("docker", "port", CONTAINER, "8000/tcp").stdout.split(":")[-1].strip()
        example, truth = example_and_truth()
        body = httpx.post(f"http://127.0.0.1:{port}/predict", json={"instances": [example]}).json()
        assert body["predictions"] == truth, body
        uid = run("docker", "exec", CONTAINER, "id", "-u").stdout.strip()
        assert uid == "10001", uid
        write = run("docker", "exec", CONTAINER, "touch", "/app/x", check=False)
        assert write.returncode != 0 and "Read-only" in write.stderr, write.stderr
        return f"healthy in {ready_s:.1f} s, uid {uid}, read-only root, /predict {truth}"
    finally:
        run("docker", "rm", "-f", "-v", CONTAINER, check=False)  # -v: its /app/data volume


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep-engine", action="store_true", help="leave dockerd running")
    args = parser.parse_args(argv)
    # make's timeout sends SIGTERM: unwind through the finally blocks (compose down, dockerd).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    engine = Engine()
    total = time.monotonic()

    def phase(name: str, step: Callable[[], object]) -> None:
        start = time.monotonic()
        print(f"stack-test: {name} ...", flush=True)
        result = step()
        lines = result if isinstance(result, list) else [result]
        for line in lines:
            print(f"stack-test:   {line}", flush=True)
        print(f"stack-test: {name} ok in {time.monotonic() - start:.0f} s", flush=True)

    try:
        phase("packages", install_packages)
        link_compose_plugin()
        phase("engine", engine.start)
    except NoEngineError as exc:
        print(f"stack-test SKIPPED: the Docker engine cannot start here: {exc}", flush=True)
        return 0
    try:
        phase("stand-in base images", build_stand_ins)
        phase("image", build_image)
        phase("container alone", check_container)
        with stack.Stack(IMAGE) as up:
            phase("port 8000 held: compose up fails with the engine's error", up.check_port_taken)
            phase("compose up (all but Grafana) on MODELSERVE_HOST_PORT", up.up)
            phase("scale modelserve=3: HAProxy, Prometheus, all three reached", up.check_scaled)
            phase("a replica stopped under c=16 load: 0 failed", up.check_stop)
            phase("demo profile: accuracy and PSI series", up.check_demo)
            phase("ModelserveDown reaches alert-webhook", up.check_alert)
            phase("balancer restart finds the replicas by DNS", up.check_balancer_restart)
            phase("restart loses no acknowledged feedback", up.check_restart)
            phase("compose down -v", up.down)
    except (AssertionError, RuntimeError, subprocess.SubprocessError, httpx.HTTPError) as exc:
        print(f"stack-test FAILED: {type(exc).__name__}: {exc}", flush=True)
        return 1
    finally:
        if not args.keep_engine:
            engine.stop()
    print(f"stack-test passed in {time.monotonic() - total:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
