"""The Prometheus configuration the Prometheus Operator would make from the shipped
ServiceMonitor and PrometheusRules, for ``make k8s-test`` (issue #25).

The test cluster has no Prometheus Operator (nor its CRDs), but the HPA on queue depth needs
Prometheus to scrape the pods the way a user's cluster does: one job per ServiceMonitor
endpoint, discovery with the Kubernetes endpoints role and the operator's relabelling, so that
``job`` is the Service name (the rules select ``job="modelserve"``) and every series carries
``namespace`` and ``pod`` (the custom metrics rule in deploy/kubernetes/README.md maps those to
Kubernetes objects). Only the ServiceMonitor fields the shipped one uses are implemented; any
other field is an error, since ignoring it would test a different scrape than the one users
get. ``instance`` is left to Prometheus, which sets it to the target's address as it does under
the operator. The operator's sharding rules (one shard here) and ``__tmp_prometheus_job_name``
are left out: they change no target or label.

Debian's prometheus is built without ``kubernetes_sd_configs`` (removed from the package for
the dependencies of Kubernetes' client library). For it, ``config(..., http_sd_url=URL)``
discovers through ``http_sd_configs`` instead, from ``python -m scripts.k8s_prometheus``: a
small HTTP SD server that lists the namespace's Endpoints, Services and Pods from the API
server and answers the targets and ``__meta_kubernetes_*`` labels Prometheus' endpoints role
makes of them (``endpoint_targets``), so the operator's relabelling runs unchanged, in
Prometheus itself.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

Doc = dict[str, Any]

SPEC_FIELDS = {"selector", "endpoints"}
ENDPOINT_FIELDS = {"port", "path", "interval", "scrapeTimeout"}


class UnsupportedError(Exception):
    """The ServiceMonitor or PrometheusRule uses something this translation does not implement."""


def _sanitize(label: str) -> str:
    """A Kubernetes label name as Prometheus' service discovery writes it in a meta label."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _check(doc: Doc, kind: str) -> None:
    if doc.get("apiVersion") != "monitoring.coreos.com/v1" or doc.get("kind") != kind:
        raise UnsupportedError(f"not a monitoring.coreos.com/v1 {kind}: {doc.get('kind')}")


def _relabel_configs(match_labels: dict[str, str], port: str) -> list[Doc]:
    keep_service = [
        {
            "action": "keep",
            "source_labels": [
                f"__meta_kubernetes_service_label_{_sanitize(name)}",
                f"__meta_kubernetes_service_labelpresent_{_sanitize(name)}",
            ],
            "regex": f"({value});true",
        }
        for name, value in sorted(match_labels.items())
    ]
    target_kind = [
        "__meta_kubernetes_endpoint_address_target_kind",
        "__meta_kubernetes_endpoint_address_target_name",
    ]
    return [
        *keep_service,
        {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_endpoint_port_name"],
            "regex": port,
        },
        *(
            {
                "source_labels": target_kind,
                "separator": ";",
                "regex": f"{kind};(.*)",
                "replacement": "${1}",
                "target_label": label,
            }
            for kind, label in (("Node", "node"), ("Pod", "pod"))
        ),
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {
            "action": "drop",
            "source_labels": ["__meta_kubernetes_pod_phase"],
            "regex": "(Failed|Succeeded)",
        },
        # No spec.jobLabel: the operator names the job after the Service.
        {
            "source_labels": ["__meta_kubernetes_service_name"],
            "target_label": "job",
            "replacement": "${1}",
        },
        {"target_label": "endpoint", "replacement": port},
    ]


def config(
    service_monitor: Doc,
    namespace: str,
    api_server: str,
    token_file: Path,
    rule_files: list[Path],
    *,
    http_sd_url: str | None = None,
) -> Doc:
    """A Prometheus configuration scraping what ``service_monitor`` selects in ``namespace``.

    With ``http_sd_url`` (a ``serve_sd`` server for ``namespace``, which has its own API server
    and token) the jobs discover through it instead of ``kubernetes_sd_configs``.
    """
    _check(service_monitor, "ServiceMonitor")
    meta = service_monitor["metadata"]
    if meta.get("namespace", namespace) != namespace:
        raise UnsupportedError(f"ServiceMonitor in {meta['namespace']}, not {namespace}")
    spec = service_monitor["spec"]
    if set(spec) - SPEC_FIELDS:
        raise UnsupportedError(
            f"unsupported ServiceMonitor fields {sorted(set(spec) - SPEC_FIELDS)}"
        )
    if not spec.get("endpoints"):
        raise UnsupportedError("a ServiceMonitor without endpoints scrapes nothing")
    if set(spec["selector"]) != {"matchLabels"}:
        raise UnsupportedError(f"only selector.matchLabels is supported: {spec['selector']}")
    k8s_sd = {
        "role": "endpoints",
        "api_server": api_server,
        "bearer_token_file": str(token_file),
        "tls_config": {"insecure_skip_verify": True},
        "namespaces": {"names": [namespace]},
    }
    jobs = []
    for index, endpoint in enumerate(spec["endpoints"]):
        if set(endpoint) - ENDPOINT_FIELDS or "port" not in endpoint:
            raise UnsupportedError(
                f"endpoint {index}: needs port and supports only {sorted(ENDPOINT_FIELDS)}: "
                f"{sorted(endpoint)}"
            )
        job: Doc = {
            "job_name": f"serviceMonitor/{namespace}/{meta['name']}/{index}",
            "honor_labels": False,
        }
        if http_sd_url is None:
            job["kubernetes_sd_configs"] = [k8s_sd]
        else:
            # Kubernetes SD watches; a poll every few seconds keeps scaled pods' gaps short.
            job["http_sd_configs"] = [{"url": http_sd_url, "refresh_interval": "5s"}]
        for field, key in (
            ("interval", "scrape_interval"),
            ("scrapeTimeout", "scrape_timeout"),
            ("path", "metrics_path"),
        ):
            if field in endpoint:
                job[key] = endpoint[field]
        job["relabel_configs"] = _relabel_configs(spec["selector"]["matchLabels"], endpoint["port"])
        jobs.append(job)
    return {"rule_files": [str(p) for p in rule_files], "scrape_configs": jobs}


def rules(prometheus_rule: Doc) -> Doc:
    """A PrometheusRule as the plain rule file the operator mounts into Prometheus."""
    _check(prometheus_rule, "PrometheusRule")
    spec = prometheus_rule["spec"]
    if set(spec) != {"groups"}:
        raise UnsupportedError(f"unsupported PrometheusRule fields {sorted(spec)}")
    return {"groups": spec["groups"]}


def _object_labels(role: str, meta: Doc) -> dict[str, str]:
    labels: dict[str, str] = {}
    for field, kind in (("labels", "label"), ("annotations", "annotation")):
        for name, value in (meta.get(field) or {}).items():
            labels[f"__meta_kubernetes_{role}_{kind}_{_sanitize(name)}"] = value
            labels[f"__meta_kubernetes_{role}_{kind}present_{_sanitize(name)}"] = "true"
    return labels


def _pod_labels(pod: Doc) -> dict[str, str]:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    ready = [c["status"] for c in status.get("conditions", []) if c["type"] == "Ready"]
    labels = {
        "__meta_kubernetes_pod_name": meta["name"],
        "__meta_kubernetes_pod_ip": status.get("podIP", ""),
        "__meta_kubernetes_pod_ready": ready[0].lower() if ready else "unknown",
        "__meta_kubernetes_pod_phase": status.get("phase", ""),
        "__meta_kubernetes_pod_node_name": spec.get("nodeName", ""),
        "__meta_kubernetes_pod_host_ip": status.get("hostIP", ""),
        "__meta_kubernetes_pod_uid": meta.get("uid", ""),
        **_object_labels("pod", meta),
    }
    for owner in meta.get("ownerReferences", []):
        if owner.get("controller"):
            labels["__meta_kubernetes_pod_controller_kind"] = owner["kind"]
            labels["__meta_kubernetes_pod_controller_name"] = owner["name"]
    return labels


def _container_labels(container: Doc, port: Doc, protocol: str) -> dict[str, str]:
    return {
        "__meta_kubernetes_pod_container_name": container["name"],
        "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
        "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
        "__meta_kubernetes_pod_container_port_protocol": protocol,
    }


def endpoint_targets(endpoints: list[Doc], services: list[Doc], pods: list[Doc]) -> list[Doc]:
    """HTTP SD target groups with the labels Prometheus 2.42's ``role: endpoints`` gives them.

    The same targets as discovery/kubernetes/endpoints.go: one per address and port of each
    Endpoints object (``notReadyAddresses`` with ready "false"), with its Service's and, for a
    Pod address, its Pod's and matching container port's meta labels, then one per container
    port of those Pods that no endpoint port covers. Node metadata is off there by default
    and left out here.
    """
    service_by_name = {s["metadata"]["name"]: s for s in services}
    pod_by_name = {p["metadata"]["name"]: p for p in pods}
    groups: list[Doc] = []

    def add(address: str, labels: dict[str, str]) -> None:
        groups.append({"targets": [address], "labels": labels})

    for eps in endpoints:
        meta = eps["metadata"]
        common = {
            "__meta_kubernetes_namespace": meta["namespace"],
            "__meta_kubernetes_endpoints_name": meta["name"],
            **_object_labels("endpoints", meta),
        }
        service = service_by_name.get(meta["name"])
        if service is not None:
            common["__meta_kubernetes_service_name"] = meta["name"]
            common.update(_object_labels("service", service["metadata"]))
        seen: dict[str, list[int]] = {}  # pod name -> endpoint ports it has targets for
        for subset in eps.get("subsets") or []:
            for port in subset.get("ports", []):
                addresses = [(a, "true") for a in subset.get("addresses", [])]
                addresses += [(a, "false") for a in subset.get("notReadyAddresses", [])]
                for addr, ready in addresses:
                    labels = {
                        **common,
                        "__meta_kubernetes_endpoint_port_name": port.get("name", ""),
                        "__meta_kubernetes_endpoint_port_protocol": port.get("protocol", ""),
                        "__meta_kubernetes_endpoint_ready": ready,
                    }
                    ref = addr.get("targetRef")
                    if ref:
                        labels["__meta_kubernetes_endpoint_address_target_kind"] = ref["kind"]
                        labels["__meta_kubernetes_endpoint_address_target_name"] = ref["name"]
                    if addr.get("nodeName"):
                        labels["__meta_kubernetes_endpoint_node_name"] = addr["nodeName"]
                    if addr.get("hostname"):
                        labels["__meta_kubernetes_endpoint_hostname"] = addr["hostname"]
                    pod = pod_by_name.get(ref["name"]) if ref and ref["kind"] == "Pod" else None
                    if pod is not None:
                        labels.update(_pod_labels(pod))
                        seen.setdefault(ref["name"], []).append(port["port"])
                        matching = [
                            (c, cp)
                            for c in pod["spec"]["containers"]
                            for cp in c.get("ports", [])
                            if cp["containerPort"] == port["port"]
                        ]
                        if matching:
                            container, cport = matching[0]
                            protocol = port.get("protocol", "")
                            labels.update(_container_labels(container, cport, protocol))
                    add(f"{addr['ip']}:{port['port']}", labels)
        for name, ports in seen.items():
            pod = pod_by_name[name]
            for container in pod["spec"]["containers"]:
                for cport in container.get("ports", []):
                    if cport["containerPort"] not in ports:
                        labels = {
                            **common,
                            **_pod_labels(pod),
                            **_container_labels(container, cport, cport.get("protocol", "")),
                        }
                        pod_ip = pod.get("status", {}).get("podIP", "")
                        add(f"{pod_ip}:{cport['containerPort']}", labels)
    return groups


class _SDHandler(BaseHTTPRequestHandler):
    server: _SDServer

    def do_GET(self) -> None:
        try:
            body = json.dumps(self.server.targets()).encode()
        except httpx.HTTPError as exc:
            self.send_error(502, f"listing from the API server: {exc}")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # a poll every few seconds: only failures (send_error's log_error) get a line


class _SDServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], api_server: str, token: str, namespace: str
    ) -> None:
        super().__init__(address, _SDHandler)
        self.namespace = namespace
        # The API server's certificate is the test cluster's own self-signed one.
        self.client = httpx.Client(
            base_url=api_server,
            headers={"Authorization": f"Bearer {token}"},
            verify=False,  # noqa: S501
            timeout=10,
        )

    def targets(self) -> list[Doc]:
        def items(resource: str) -> list[Doc]:
            response = self.client.get(f"/api/v1/namespaces/{self.namespace}/{resource}")
            response.raise_for_status()
            found: list[Doc] = response.json()["items"]
            return found

        return endpoint_targets(items("endpoints"), items("services"), items("pods"))


def serve_sd(listen: str, api_server: str, token_file: Path, namespace: str) -> _SDServer:
    """The HTTP SD server for ``namespace`` on ``listen`` (``IP:PORT``, port 0 for any)."""
    host, _, port = listen.rpartition(":")
    token = token_file.read_text().strip()
    return _SDServer((host, int(port)), api_server, token, namespace)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prometheus HTTP SD with the endpoints role")
    parser.add_argument("--listen", required=True, help="IP:PORT")
    parser.add_argument("--api-server", required=True)
    parser.add_argument("--token-file", required=True, type=Path)
    parser.add_argument("--namespace", required=True)
    args = parser.parse_args(argv)
    server = serve_sd(args.listen, args.api_server, args.token_file, args.namespace)
    host, port = server.server_address[:2]
    print(f"http SD for namespace {args.namespace} on http://{host!s}:{port}/", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
