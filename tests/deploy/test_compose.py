"""The compose stack as Docker would see it (``docker-compose config``, no engine needed).

Every mounted file exists; Prometheus finds modelserve replicas by DNS; HAProxy (the
``balancer``) publishes the one host port and finds the replicas by DNS too; Grafana is
provisioned with the dashboard the monitoring tests check; the demo simulator's command really
runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers.dockerfile import load, stages
from tests.helpers.support import ROOT, copy_registry

COMPOSE = str(Path(sys.executable).parent / "docker-compose")


def compose_config(**env: str) -> dict[str, Any]:
    """The normalised compose model, demo profile included (paths absolute, env interpolated)."""
    done = subprocess.run(
        [COMPOSE, "--profile", "demo", "config", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},  # no MODELSERVE_*/GRAFANA_* from the caller's shell
    )
    assert done.returncode == 0, done.stderr
    model: dict[str, Any] = json.loads(done.stdout)
    return model


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return compose_config()


def service(stack: dict[str, Any], name: str) -> dict[str, Any]:
    assert name in stack["services"], f"no service {name!r}"
    svc: dict[str, Any] = stack["services"][name]
    return svc


def host_path(svc: dict[str, Any], container_path: str) -> Path:
    """Where a path inside the container comes from on the host, through the bind mounts."""
    target = PurePosixPath(container_path)
    best: tuple[int, Path] | None = None
    for mount in svc.get("volumes", []):
        if mount["type"] != "bind":
            continue
        mounted = PurePosixPath(mount["target"])
        if target == mounted or mounted in target.parents:
            depth = len(mounted.parts)
            if best is None or depth > best[0]:
                best = (depth, Path(mount["source"]) / target.relative_to(mounted))
    assert best is not None, f"{container_path} is not inside any bind mount"
    return best[1]


def test_every_bind_mount_exists_in_the_repo(stack: dict[str, Any]) -> None:
    mounts = [
        (name, m)
        for name, svc in stack["services"].items()
        for m in svc.get("volumes", [])
        if m["type"] == "bind"
    ]
    assert len(mounts) >= 5
    for name, mount in mounts:
        source = Path(mount["source"])
        assert source.is_relative_to(ROOT), f"{name}: {source} is outside the repo"
        assert source.exists(), f"{name} mounts {source}, which does not exist"
        # A file mounted onto a file path (e.g. prometheus.yml) must be a file, not a directory.
        expects_file = PurePosixPath(mount["target"]).suffix in {".yml", ".yaml", ".cfg"}
        assert source.is_file() == expects_file, f"{name}: {source} vs {mount['target']}"
        assert mount.get("read_only") is True, f"{name}: config mounts are read-only"


def test_prometheus_discovers_modelserve_replicas_by_dns(stack: dict[str, Any]) -> None:
    prometheus = service(stack, "prometheus")
    flags = dict(arg.split("=", 1) for arg in prometheus["command"] if "=" in arg)
    config = yaml.safe_load(host_path(prometheus, flags["--config.file"]).read_text())
    image_port = load(ROOT / "Dockerfile", {}).env["MODELSERVE_PORT"]

    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    dns = [sd for job in jobs.values() for sd in job.get("dns_sd_configs", [])]
    assert any(
        "modelserve" in sd["names"]
        and sd.get("type", "SRV") == "A"
        and str(sd["port"]) == image_port
        for sd in dns
    ), dns
    assert not any(
        "modelserve" in str(sc.get("targets"))
        for job in jobs.values()
        for sc in job.get("static_configs", [])
    ), "a static modelserve target would miss scaled replicas"

    # Rule globs resolve, through the mounts, to the repo's rule files.
    rule_files = [
        path
        for pattern in config["rule_files"]
        for path in host_path(prometheus, pattern).parent.glob(PurePosixPath(pattern).name)
    ]
    assert {p.name for p in rule_files} >= {"recording.yml", "alerts.yml"}

    # Alertmanager targets are compose services listening on that port.
    for am in config["alerting"]["alertmanagers"]:
        for static in am["static_configs"]:
            for target in static["targets"]:
                host, port = target.split(":")
                ports = [str(p["target"]) for p in service(stack, host).get("ports", [])]
                assert port in ports


def test_grafana_provisioning_points_at_the_repo_dashboard(stack: dict[str, Any]) -> None:
    grafana = service(stack, "grafana")
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())
    folders = [host_path(grafana, p["options"]["path"]) for p in providers["providers"]]
    dashboard = ROOT / "grafana" / "dashboards" / "modelserve.json"
    assert dashboard.parent in folders
    assert json.loads(dashboard.read_text())["uid"] == "modelserve"

    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home) == dashboard

    datasources = yaml.safe_load((provisioning / "datasources" / "datasource.yml").read_text())
    (prom,) = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert prom["uid"] == "prometheus"
    assert prom["url"] == "http://prometheus:9090"
    assert any(p["target"] == 9090 for p in service(stack, "prometheus")["ports"])
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]  # a default exists for local use


def test_modelserve_scales_and_runs_read_only(stack: dict[str, Any]) -> None:
    svc = service(stack, "modelserve")
    assert "container_name" not in svc
    # The balancer publishes the host port; a replica publishing one could not be scaled.
    assert not svc.get("ports"), "the way in is the balancer"
    assert svc["read_only"] is True
    image = load(ROOT / "Dockerfile", {})
    assert any(t.split(":")[0] == "/tmp" for t in svc["tmpfs"])
    assert image.env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    data_dir = str(PurePosixPath(image.env["MODELSERVE_PREDICTION_LOG"]).parent)
    volumes = {m["target"]: m for m in svc["volumes"]}
    assert volumes[data_dir]["type"] == "volume"
    assert volumes[data_dir]["source"] in stack["volumes"]


def test_images_are_pinned_and_dependencies_wait_for_health(stack: dict[str, Any]) -> None:
    dockerfile_has_healthcheck = load(ROOT / "Dockerfile", {}).healthcheck is not None
    for name, svc in stack["services"].items():
        repo, _, tag = svc["image"].rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {svc['image']} is not pinned"
        for dep, spec in svc.get("depends_on", {}).items():
            assert spec["condition"] == "service_healthy", f"{name} -> {dep}"
            target = service(stack, dep)
            has_check = "healthcheck" in target and not target["healthcheck"].get("disable")
            assert has_check or ("build" in target and dockerfile_has_healthcheck), dep
    for volume in ("prometheus-data", "grafana-data", "predictions"):
        assert volume in stack["volumes"]


def haproxy_sections(text: str) -> dict[str, list[list[str]]]:
    """``haproxy.cfg`` as {"backend modelserve": [["balance", "leastconn"], ...], ...}."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(" ".join(line.split()), [])
        else:
            current.append(line.split())
    return sections


def directive(section: list[list[str]], *head: str) -> list[str]:
    """The one line of ``section`` that starts with ``head`` (its words after it)."""
    found = [words[len(head) :] for words in section if tuple(words[: len(head)]) == head]
    assert len(found) == 1, (head, found)
    return found[0]


def test_the_balancer_publishes_the_host_port_and_finds_replicas_by_dns(
    stack: dict[str, Any],
) -> None:
    """One host port (MODELSERVE_HOST_PORT on MODELSERVE_HOST_IP) into HAProxy, which finds
    every replica through Docker's DNS and checks it on /health/ready; no handoff left."""
    balancer = service(stack, "balancer")
    repo, _, tag = balancer["image"].rpartition(":")
    assert repo == "haproxy" and tag.startswith("2.6"), balancer["image"]
    api, grpc, stats_port = sorted(balancer["ports"], key=lambda p: int(p["target"]))
    assert (api["host_ip"], api["published"], api["target"]) == ("127.0.0.1", "8000", 8000)
    assert (grpc["host_ip"], grpc["published"], grpc["target"]) == ("127.0.0.1", "8081", 8081)
    assert (stats_port["host_ip"], stats_port["target"]) == ("127.0.0.1", 8404)
    moved = service(
        compose_config(MODELSERVE_HOST_PORT="8080", MODELSERVE_HOST_IP="0.0.0.0"), "balancer"
    )
    assert {(p["host_ip"], p["published"]) for p in moved["ports"] if p["target"] == 8000} == {
        ("0.0.0.0", "8080")
    }
    moved_grpc = service(compose_config(MODELSERVE_GRPC_HOST_PORT="9081"), "balancer")
    assert {p["published"] for p in moved_grpc["ports"] if p["target"] == 8081} == {"9081"}
    assert balancer["read_only"] is True and "user" not in balancer  # the image's user, not root
    assert "network_mode" not in balancer and "depends_on" not in balancer

    cfg = host_path(balancer, "/usr/local/etc/haproxy/haproxy.cfg")
    sections = haproxy_sections(cfg.read_text())
    assert directive(sections["frontend api"], "bind") == [":8000"]
    backend = sections["backend modelserve"]
    assert directive(sections["frontend api"], "default_backend") == ["modelserve"]
    image_port = load(ROOT / "Dockerfile", {}).env["MODELSERVE_PORT"]
    name, count, address = directive(backend, "server-template")
    assert address == f"modelserve:{image_port}" and int(count) >= 3, (name, count, address)
    defaults = directive(backend, "default-server")
    for word in ("check", "resolvers", "init-addr"):
        assert word in defaults, defaults
    # gRPC: HTTP/2 on both sides (each call balanced), replicas checked on their HTTP port.
    assert directive(backend, "option", "httpchk") == []
    check = directive(backend, "http-check", "send")
    grpc_port = load(ROOT / "Dockerfile", {}).env["MODELSERVE_GRPC_PORT"]
    assert directive(sections["frontend grpc"], "bind") == [":8081", "proto", "h2"]
    grpc_backend = sections["backend modelserve-grpc"]
    template = directive(grpc_backend, "server-template")
    assert template[2] == f"modelserve:{grpc_port}", template
    assert template[template.index("proto") + 1] == "h2", template
    # The checks' own connect rule: a check-proto on the template line reaches its first server
    # only (HAProxy 2.6), the others' checks would speak h2 to the HTTP port and fail.
    assert "check-proto" not in template, template
    connect = directive(grpc_backend, "http-check", "connect")
    assert connect[connect.index("port") + 1] == image_port, connect
    assert connect[connect.index("proto") + 1] == "h1", connect
    assert directive(grpc_backend, "http-check", "send") == check
    resolvers = defaults[defaults.index("resolvers") + 1]
    assert directive(sections[f"resolvers {resolvers}"], "nameserver")[1] == "127.0.0.11:53"
    assert check[check.index("uri") + 1] == "/health/ready"
    assert directive(backend, "http-check", "expect") == ["status", "200"]
    assert set(directive(backend, "retry-on")) <= {"conn-failure", "empty-response"}

    # Prometheus scrapes HAProxy's exporter on its stats frontend, by service name.
    stats = sections["frontend stats"]
    assert directive(stats, "bind") == [f":{stats_port['target']}"]
    assert "prometheus-exporter" in directive(stats, "http-request", "use-service")
    prometheus = service(stack, "prometheus")
    flags = dict(arg.split("=", 1) for arg in prometheus["command"] if "=" in arg)
    config = yaml.safe_load(host_path(prometheus, flags["--config.file"]).read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "haproxy"]
    assert job["static_configs"][0]["targets"] == [f"balancer:{stats_port['target']}"]
    assert job.get("metrics_path", "/metrics") == "/metrics"

    # What the socket handoff needed is gone.
    assert "handoff" not in stack.get("volumes", {}) and "edge" not in stack["services"]
    for name, svc in stack["services"].items():
        assert svc.get("network_mode") != "host", name
        assert not any(k.startswith("MODELSERVE_HANDOFF") for k in svc.get("environment", {}))


@pytest.mark.e2e
def test_demo_simulator_command_runs_against_a_real_server(
    stack: dict[str, Any], server_factory: Any, tmp_path: Path
) -> None:
    simulate = service(stack, "simulate")
    assert simulate["profiles"] == ["demo"]
    command: list[str] = list(simulate["command"])
    assert command[:2] == ["modelserve", "simulate"]
    assert command[command.index("--url") + 1] == "http://modelserve:8000"

    server = server_factory(copy_registry(tmp_path / "models"))
    server.wait_ready()
    # The same flags, pointed at a loopback server for a few seconds instead of a day.
    overrides = {"--url": server.url, "--duration": "3", "--rate": "10", "--feedback-delay": "0.5"}
    for flag, value in overrides.items():
        command[command.index(flag) + 1] = value
    done = subprocess.run(
        [str(Path(sys.executable).parent / command[0]), *command[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert "modelserve_predictions_total{" in metrics
    assert "modelserve_feedback_total{" in metrics, done.stdout


def test_every_service_of_the_image_mounts_its_data_volume(stack: dict[str, Any]) -> None:
    """The image declares VOLUME /app/data: a service that mounts nothing there gets an
    anonymous volume on every create, left behind by a recreate (`down -v` aside)."""
    final = stages((ROOT / "Dockerfile").read_text())[-1]
    declared: list[str] = []
    for inst in final.instructions:
        if inst.keyword == "VOLUME":
            args = inst.args.strip()
            declared += json.loads(args) if args.startswith("[") else args.split()
    assert "/app/data" in declared
    for name, svc in stack["services"].items():
        if svc.get("image") != service(stack, "modelserve")["image"]:
            continue
        mounted = {m["target"] for m in svc.get("volumes", [])}
        mounted |= {t.split(":")[0] for t in svc.get("tmpfs", [])}
        assert set(declared) <= mounted, f"{name} mounts nothing at {declared}"
