"""deploy/kubernetes: valid, generated from its sources, and in step with the server itself."""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from app.config import Settings
from scripts import check_k8s, gen_k8s
from scripts.gen_docs import env_var
from tests.helpers.support import Server

BASE = gen_k8s.BASE
SHUTDOWN_SLACK_S = 5  # time for uvicorn workers to exit after draining


def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(BASE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in check_k8s.documents(path):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return _objects()


@pytest.fixture(scope="module")
def pod(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = objects[("Deployment", "modelserve")]["spec"]["template"]
    return spec


def _server(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = next(
        c for c in pod["spec"]["containers"] if c["name"] == "modelserve"
    )
    return container


def _env(pod: dict[str, Any]) -> dict[str, str]:
    """The literal env values (entries read from Secrets are left out)."""
    return {e["name"]: e["value"] for e in _server(pod)["env"] if "value" in e}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_generated_manifests_match_their_sources() -> None:
    for path, text in gen_k8s.generated().items():
        assert path.read_text() == text, f"{path} is stale: run python scripts/gen_k8s.py"
    rule_docs = check_k8s.documents(gen_k8s.RULE_OUT)
    sources = gen_k8s.rule_files()
    assert [d["metadata"]["name"] for d in rule_docs] == [f"modelserve-{p.stem}" for p in sources]
    for doc, source in zip(rule_docs, sources, strict=True):
        assert doc["spec"] == yaml.safe_load(source.read_text())
    (dashboard,) = check_k8s.documents(gen_k8s.DASHBOARD_OUT)
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["modelserve.json"] == gen_k8s.DASHBOARD.read_text()


def test_generator_follows_whatever_rule_files_exist(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(
        "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: |\n          sum(up)\n"
    )
    (tmp_path / "a.yml").write_text("groups: []\n")
    docs = list(yaml.safe_load_all(gen_k8s.prometheus_rules(tmp_path)))
    assert [d["metadata"]["name"] for d in docs] == ["modelserve-a", "modelserve-b"]
    assert docs[1]["spec"]["groups"][0]["rules"][0]["expr"] == "sum(up)\n"
    (tmp_path / "c.yml").write_text("rules: []\n")
    with pytest.raises(ValueError, match="groups"):
        gen_k8s.prometheus_rules(tmp_path)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (apt prometheus) missing")
def test_every_manifest_passes_strict_validation() -> None:
    files = check_k8s.manifests()
    assert {p.name for p in files} >= {
        "deployment.yaml",
        "prometheusrule.yaml",
        "hpa-queue-depth.yaml",
    }
    for path in files:
        assert check_k8s.check_file(path) == [], path


def test_validation_rejects_unexpected_fields_and_unknown_kinds(tmp_path: Path) -> None:
    deployment = yaml.safe_load((BASE / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    assert any("livenessprobe" in e for e in check_k8s.check_file(bad))
    bad.write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")
    assert any("no schema" in e for e in check_k8s.check_file(bad))


def test_kustomization_lists_every_base_manifest() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_probes_ports_and_env_agree_with_the_server(
    pod: dict[str, Any], client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = _server(pod)
    env = _env(pod)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # every MODELSERVE_* value parses
    fields = {env_var(name, info) for name, info in Settings.model_fields.items()}
    assert {n for n in env if n.startswith("MODELSERVE_")} <= fields
    assert settings.host == "0.0.0.0"
    port, grpc_port = container["ports"]
    assert port["containerPort"] == settings.port == Settings.model_fields["port"].default
    assert (grpc_port["name"], grpc_port["containerPort"]) == ("grpc", settings.grpc_port)
    assert settings.grpc_port == Settings.model_fields["grpc_port"].default
    probes = {
        k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["livenessProbe"]["path"] == "/health/live"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    for probe in probes.values():
        assert probe["port"] == port["name"]
        assert client.get(probe["path"]).status_code == 200  # the routes exist and answer
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for writable in (
        "MODELSERVE_REGISTRY",
        "MODELSERVE_PREDICTION_LOG",
        "PROMETHEUS_MULTIPROC_DIR",
    ):
        assert any(env[writable].startswith(m) for m in mounts), writable
    cpu_limit = float(container["resources"]["limits"]["cpu"])
    assert settings.workers <= cpu_limit


def test_replicas_share_a_postgres_log_from_a_required_secret(
    objects: dict[tuple[str, str], dict[str, Any]], pod: dict[str, Any]
) -> None:
    """More than one replica: the log URL comes from a Secret the pod cannot start without."""
    assert objects[("HorizontalPodAutoscaler", "modelserve")]["spec"]["minReplicas"] > 1
    (entry,) = [e for e in _server(pod)["env"] if e["name"] == "MODELSERVE_DATABASE_URL"]
    ref = entry["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"], ref["optional"]) == ("modelserve-database", "url", False)
    assert "database_url" in Settings.model_fields
    deploy_docs = (BASE.parent / "README.md").read_text()
    assert "secret generic modelserve-database --from-literal=url=postgresql://" in deploy_docs
    index = [e["name"] for e in _server(pod)["env"]].index("MODELSERVE_DATABASE_URL")
    assert f"/containers/0/env/{index}\n" in deploy_docs  # the one-replica overlay's patch


def test_graceful_termination_matches_the_server_grace_period(pod: dict[str, Any]) -> None:
    container = _server(pod)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    default_drain = Settings.model_fields["shutdown_drain_s"].default
    drain = math.ceil(float(_env(pod).get("MODELSERVE_SHUTDOWN_DRAIN_S", default_drain)))
    server_grace = math.ceil(float(_env(pod)["MODELSERVE_REQUEST_TIMEOUT_S"]))
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace == pre_stop + drain + server_grace + SHUTDOWN_SLACK_S


def test_security_and_resources(pod: dict[str, Any]) -> None:
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    for container in [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_labels_and_selectors_agree(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = objects[("Deployment", "modelserve")]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _matches(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    service = objects[("Service", "modelserve")]
    assert _matches(service["spec"]["selector"], pod_labels)
    service_port, grpc_port = service["spec"]["ports"]
    container_ports = [p["name"] for p in _server(deployment["spec"]["template"])["ports"]]
    assert [service_port["targetPort"], grpc_port["targetPort"]] == container_ports
    assert grpc_port["appProtocol"] == "grpc"
    assert _matches(
        objects[("PodDisruptionBudget", "modelserve")]["spec"]["selector"]["matchLabels"],
        pod_labels,
    )
    monitor = objects[("ServiceMonitor", "modelserve")]
    assert _matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [service_port["name"]]
    assert [e["path"] for e in monitor["spec"]["endpoints"]] == ["/metrics"]
    target = objects[("HorizontalPodAutoscaler", "modelserve")]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "modelserve")
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert _matches(spread["labelSelector"]["matchLabels"], pod_labels)
    # Under a ServiceMonitor, Prometheus' job label is the Service name: the rules that select
    # by job (the HTTP ones) rely on it, and no rule names another job.
    jobs = [j for f in gen_k8s.rule_files() for j in re.findall(r'job="([^"]*)"', f.read_text())]
    assert jobs and set(jobs) == {"modelserve"}, jobs
    assert service["metadata"]["name"] == "modelserve"


@pytest.mark.e2e
def test_the_pods_settings_serve_on_their_probes(
    pod: dict[str, Any], registry_path: Path, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    """The Deployment's own env, paths moved into tmp_path and loopback instead of 0.0.0.0."""
    env = _env(pod)
    env.update(
        MODELSERVE_HOST="127.0.0.1",
        MODELSERVE_REGISTRY=str(registry_path),
        MODELSERVE_PREDICTION_LOG=str(tmp_path / "data" / "predictions.db"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    env.pop("MODELSERVE_PORT")
    server = server_factory(registry_path, env=env)
    container = _server(pod)
    server.wait_ready(path=container["readinessProbe"]["httpGet"]["path"])
    live = httpx.get(server.url + container["livenessProbe"]["httpGet"]["path"], timeout=10)
    assert live.status_code == 200
    metrics = httpx.get(server.url + "/metrics", timeout=10)
    assert "modelserve_model_info" in metrics.text
