"""scripts/k8s_prometheus.py: the shipped ServiceMonitor and PrometheusRules as a Prometheus
configuration that promtool accepts, scraping what the operator would (issue #25).

``make k8s-test`` runs Prometheus with this configuration; if its relabelling selected other
targets or named the job differently than the operator does, the rules (``job="modelserve"``)
and the HPA's queue-depth metric (``namespace`` and ``pod`` labels) would be tested against a
scrape no user has. Debian's promtool, like its prometheus, has no ``kubernetes_sd_configs``,
so promtool checks the HTTP SD form, whose jobs differ in the discovery entry only, and
``promtool check service-discovery`` runs Prometheus' own relabelling on what the HTTP SD
server makes of a fake API server's objects.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.k8s_manifests import render
from scripts.k8s_prometheus import UnsupportedError, config, rules, serve_sd
from tests.helpers.fake_http import FakeJSONServer, Request
from tests.helpers.support import ROOT

BASE = ROOT / "deploy/kubernetes/base"
API = "https://10.211.0.1:6443"
JOB = "serviceMonitor/ml/modelserve/0"
SELECTED = {"app.kubernetes.io/name": "modelserve", "app.kubernetes.io/component": "server"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "the apt package `prometheus` is not installed (see .ci/apt-packages.txt)"
    return found


def _docs(kind: str) -> list[dict[str, Any]]:
    return [d for d in render(BASE) if d["kind"] == kind]


def _service_monitor() -> dict[str, Any]:
    (doc,) = _docs("ServiceMonitor")
    return doc


def _rule(relabel: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in relabel if all(r.get(k) == v for k, v in match.items())]


def test_config_scrapes_the_service_monitors_endpoint_as_the_operator_does() -> None:
    cfg = config(_service_monitor(), "ml", API, Path("/t/token"), [Path("/r/a.yml")])
    assert cfg["rule_files"] == ["/r/a.yml"]
    (job,) = cfg["scrape_configs"]
    assert job["job_name"] == "serviceMonitor/ml/modelserve/0"
    assert (job["scrape_interval"], job["scrape_timeout"], job["metrics_path"]) == (
        "15s",
        "10s",
        "/metrics",
    )
    assert job["kubernetes_sd_configs"] == [
        {
            "role": "endpoints",
            "api_server": API,
            "bearer_token_file": "/t/token",
            "tls_config": {"insecure_skip_verify": True},
            "namespaces": {"names": ["ml"]},
        }
    ]
    relabel = job["relabel_configs"]
    keeps = _rule(relabel, action="keep")
    assert keeps == [
        {
            "action": "keep",
            "source_labels": [
                "__meta_kubernetes_service_label_app_kubernetes_io_component",
                "__meta_kubernetes_service_labelpresent_app_kubernetes_io_component",
            ],
            "regex": "(server);true",
        },
        {
            "action": "keep",
            "source_labels": [
                "__meta_kubernetes_service_label_app_kubernetes_io_name",
                "__meta_kubernetes_service_labelpresent_app_kubernetes_io_name",
            ],
            "regex": "(modelserve);true",
        },
        {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_endpoint_port_name"],
            "regex": "http",
        },
    ]
    # keeps come first: a later rule must not see targets of other Services or ports
    assert relabel[: len(keeps)] == keeps
    assert _rule(relabel, target_label="job") == [
        {
            "source_labels": ["__meta_kubernetes_service_name"],
            "target_label": "job",
            "replacement": "${1}",
        }
    ]
    assert _rule(relabel, target_label="endpoint") == [
        {"target_label": "endpoint", "replacement": "http"}
    ]
    for label, meta in [
        ("namespace", "__meta_kubernetes_namespace"),
        ("service", "__meta_kubernetes_service_name"),
        ("container", "__meta_kubernetes_pod_container_name"),
    ]:
        assert _rule(relabel, target_label=label) == [
            {"source_labels": [meta], "target_label": label}
        ]
    assert {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"} in relabel
    assert not _rule(relabel, target_label="instance")  # Prometheus sets it to __address__


def test_http_sd_form_differs_in_the_discovery_entry_only() -> None:
    k8s = config(_service_monitor(), "ml", API, Path("/t"), [])
    http = config(_service_monitor(), "ml", API, Path("/t"), [], http_sd_url="http://sd:1/")
    (k8s_job,), (http_job,) = k8s["scrape_configs"], http["scrape_configs"]
    assert http_job.pop("http_sd_configs") == [{"url": "http://sd:1/", "refresh_interval": "5s"}]
    del k8s_job["kubernetes_sd_configs"]
    assert http_job == k8s_job


def test_promtool_accepts_the_config_and_the_rule_files(promtool: str, tmp_path: Path) -> None:
    rule_files = []
    prometheus_rules = _docs("PrometheusRule")
    sources = len(list((ROOT / "prometheus/rules").glob("*.yml")))  # one PrometheusRule each
    assert len(prometheus_rules) == sources == 5
    for doc in prometheus_rules:
        path = tmp_path / f"{doc['metadata']['name']}.yml"
        path.write_text(yaml.safe_dump(rules(doc)))
        rule_files.append(path)
    cfg = tmp_path / "prometheus.yml"
    built = config(_service_monitor(), "ml", API, Path("/t"), rule_files, http_sd_url="http://sd/")
    cfg.write_text(yaml.safe_dump(built))
    proc = subprocess.run(
        [promtool, "check", "config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {sources} rule files found" in proc.stdout
    for path in rule_files:
        assert f"Checking {path}\n  SUCCESS:" in proc.stdout  # each rule file was checked


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "jobLabel"), "app"),
        (("spec", "namespaceSelector"), {"any": True}),
        (("spec", "selector", "matchExpressions"), []),
        (("spec", "endpoints", 0, "scheme"), "https"),
        (("spec", "endpoints", 0, "relabelings"), []),
        (("metadata", "namespace"), "other"),
    ],
)
def test_unimplemented_service_monitor_fields_are_errors(path: tuple[Any, ...], value: Any) -> None:
    doc = copy.deepcopy(_service_monitor())
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(UnsupportedError):
        config(doc, "ml", API, Path("/t"), [])


def test_endpoint_without_port_and_unknown_rule_fields_are_errors() -> None:
    doc = copy.deepcopy(_service_monitor())
    doc["spec"]["endpoints"] = [{"targetPort": 8000}]
    with pytest.raises(UnsupportedError):
        config(doc, "ml", API, Path("/t"), [])
    rule = copy.deepcopy(_docs("PrometheusRule")[0])
    rule["spec"]["partial_response_strategy"] = "warn"
    with pytest.raises(UnsupportedError):
        rules(rule)


def _pod(name: str, ip: str, phase: str, ports: dict[str, int]) -> dict[str, Any]:
    container_ports = [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports.items()]
    return {
        "metadata": {"name": name, "namespace": "ml", "labels": {"app": "x"}},
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": "modelserve", "ports": container_ports}],
        },
        "status": {"phase": phase, "podIP": ip},
    }


def _address(pod: dict[str, Any]) -> dict[str, Any]:
    ref = {"kind": "Pod", "name": pod["metadata"]["name"], "namespace": "ml"}
    return {"ip": pod["status"]["podIP"], "nodeName": "node-1", "targetRef": ref}


@pytest.fixture
def api_objects() -> dict[str, list[dict[str, Any]]]:
    """Two Services: the selected one (ports http and grpc) and one lacking a selected label."""
    both = {"http": 8000, "grpc": 8081}
    ready = _pod("modelserve-a", "10.212.1.5", "Running", {**both, "debug": 9000})
    unready = _pod("modelserve-b", "10.212.2.6", "Running", both)
    done = _pod("modelserve-c", "10.212.2.7", "Succeeded", both)
    other = _pod("other-d", "10.212.1.8", "Running", {"http": 8000})
    ports = [{"name": "http", "port": 8000, "protocol": "TCP"}, {"name": "grpc", "port": 8081}]
    return {
        "services": [
            {"metadata": {"name": "modelserve", "namespace": "ml", "labels": SELECTED}},
            {"metadata": {"name": "other", "labels": {"app.kubernetes.io/name": "modelserve"}}},
        ],
        "endpoints": [
            {
                "metadata": {"name": "modelserve", "namespace": "ml"},
                "subsets": [
                    {
                        "addresses": [_address(ready)],
                        "notReadyAddresses": [_address(unready), _address(done)],
                        "ports": ports,
                    }
                ],
            },
            {
                "metadata": {"name": "other", "namespace": "ml"},
                "subsets": [{"addresses": [_address(other)], "ports": ports[:1]}],
            },
        ],
        "pods": [ready, unready, done, other],
    }


@pytest.fixture
def sd_url(api_objects: dict[str, list[dict[str, Any]]], tmp_path: Path) -> Iterator[str]:
    def answer(request: Request) -> tuple[int, Any]:
        assert request.authorization == "Bearer sd-token"
        namespace, resource = request.path.removeprefix("/api/v1/namespaces/").split("/")
        assert namespace == "ml"
        return 200, {"kind": "List", "items": api_objects[resource]}

    token = tmp_path / "token"
    token.write_text("sd-token\n")
    with FakeJSONServer(answer) as api:
        sd = serve_sd("127.0.0.1:0", api.url, token, "ml")
        thread = threading.Thread(target=sd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{sd.server_address[1]}/"
        finally:
            sd.shutdown()
            sd.server_close()


def test_prometheus_relabelling_keeps_the_selected_services_http_endpoints(
    promtool: str, sd_url: str, tmp_path: Path
) -> None:
    """Prometheus' own relabelling (promtool), not a re-implementation of it in the test."""
    cfg = tmp_path / "prometheus.yml"
    built = config(_service_monitor(), "ml", API, Path("/t"), [], http_sd_url=sd_url)
    cfg.write_text(yaml.safe_dump(built))
    proc = subprocess.run(
        [promtool, "check", "service-discovery", "--timeout=1s", str(cfg), JOB],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout)
    discovered = sorted(r["discoveredLabels"]["__address__"] for r in results)
    # a, b, c on http and grpc, a's uncovered container port, d (the other Service) on http
    assert len(discovered) == 8, discovered
    kept = sorted((r["labels"] for r in results if r["labels"]), key=lambda lb: lb["pod"])
    common = {
        "job": "modelserve",
        "namespace": "ml",
        "service": "modelserve",
        "container": "modelserve",
        "endpoint": "http",
        "__metrics_path__": "/metrics",
        "__scheme__": "http",
        "__scrape_interval__": "15s",
        "__scrape_timeout__": "10s",
    }
    assert kept == [
        {**common, "pod": pod, "__address__": address, "instance": address}
        # c has Succeeded; d is another Service's
        for pod, address in [
            ("modelserve-a", "10.212.1.5:8000"),
            ("modelserve-b", "10.212.2.6:8000"),
        ]
    ]
