"""A minimal stand-in for prometheus-adapter: the Kubernetes custom metrics API
(``custom.metrics.k8s.io/v1beta1``) for pods, answered from a real Prometheus, for
``make k8s-test`` (issue #25).

prometheus-adapter cannot be installed here, and the HPA of
deploy/kubernetes/optional/hpa-queue-depth.yaml reads ``modelserve_queue_depth`` through that
API. So this server does what the adapter does with the rule shipped in
deploy/kubernetes/README.md ("Scaling on queue depth"), which it reads from the README at start
so that the documented rule is the tested one: for ``pods/*`` it lists the pods matching the
HPA's label selector through the API server, renders the rule's ``metricsQuery`` with the
adapter's label matchers (``namespace="ns",pod=~"a|b"``, ``pod="a"`` for one pod) and group-by,
runs it on Prometheus and answers one MetricValue per pod Prometheus has a value for, the value
as the adapter writes it (milli-units, Kubernetes' canonical quantity). Only what that rule
uses is implemented (``seriesQuery``, ``resources.overrides`` for namespace and pod, ``name.as``,
``metricsQuery`` with ``<<.Series>>``, ``<<.LabelMatchers>>``, ``<<.GroupBy>>``); anything
else in the rule is an error. Unlike the adapter it does not discover series: it lists the
metric whether or not Prometheus has it yet, and only for pods (not namespaces).

Run it where the API server and Prometheus are reachable, then register it with the
aggregator (``registration``)::

    python -m tests.helpers.custom_metrics_api --listen IP:PORT --prometheus http://...:9090 \\
        --api-server https://...:6443 --token-file TOKEN --cert-dir DIR

Each query and each answer is one line on stdout: the HPA's inputs, in the test's log.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import ssl
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import yaml

README = Path(__file__).resolve().parents[2] / "deploy/kubernetes/README.md"
GROUP = "custom.metrics.k8s.io"
GROUP_VERSION = f"{GROUP}/v1beta1"
PREFIX = f"/apis/{GROUP_VERSION}"
SERVICE = "custom-metrics-api"
TEMPLATE_FIELD = re.compile(r"<<\s*\.(\w+)\s*>>")
SERIES_QUERY = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?$")
METRIC_PATH = re.compile(rf"^{PREFIX}/namespaces/([^/]+)/pods/([^/]+)/([^/]+)$")
# Kubernetes' canonical decimal suffixes, largest first (resource.Quantity.String()).
SUFFIXES = [("E", 18), ("P", 15), ("T", 12), ("G", 9), ("M", 6), ("k", 3)]

Doc = dict[str, Any]


class RuleError(Exception):
    """The adapter rule uses something this stand-in does not implement."""


@dataclass(frozen=True)
class Rule:
    metric: str  # the name the custom metrics API serves (name.as)
    series: str  # <<.Series>>: the series name seriesQuery selects
    namespace_label: str
    pod_label: str
    metrics_query: str

    def query(self, namespace: str, pods: list[str]) -> str:
        """The rendered metricsQuery, with the adapter's matchers (metrics_query.go Build)."""
        pod_matcher = (
            f"={json.dumps(pods[0])}" if len(pods) == 1 else f"=~{json.dumps('|'.join(pods))}"
        )
        fields = {
            "Series": self.series,
            "LabelMatchers": f"{self.namespace_label}={json.dumps(namespace)},"
            f"{self.pod_label}{pod_matcher}",
            "GroupBy": self.pod_label,
        }
        return TEMPLATE_FIELD.sub(lambda m: fields[m.group(1)], self.metrics_query)


def parse_rule(rule: Doc) -> Rule:
    if set(rule) != {"seriesQuery", "resources", "name", "metricsQuery"}:
        raise RuleError(f"unsupported rule fields: {sorted(rule)}")
    series = SERIES_QUERY.match(rule["seriesQuery"])
    if not series:
        raise RuleError(f"seriesQuery is not a series selector: {rule['seriesQuery']!r}")
    resources = rule["resources"]
    if set(resources) != {"overrides"}:
        raise RuleError(f"resources supports only overrides: {sorted(resources)}")
    labels: dict[str, str] = {}
    for label, override in resources["overrides"].items():
        if set(override) != {"resource"} or override["resource"] not in {"namespace", "pod"}:
            raise RuleError(f"override of {label}: only {{resource: namespace|pod}}: {override}")
        labels[override["resource"]] = label
    if set(labels) != {"namespace", "pod"} or len(resources["overrides"]) != 2:
        raise RuleError(f"overrides must map one label each to namespace and pod: {resources}")
    if set(rule["name"]) != {"as"}:
        raise RuleError(f"name supports only as: {rule['name']}")
    query = rule["metricsQuery"]
    used = TEMPLATE_FIELD.findall(query)
    if set(used) - {"Series", "LabelMatchers", "GroupBy"} or query.count("<<") != len(used):
        raise RuleError(f"metricsQuery uses template fields other than the supported: {query!r}")
    return Rule(rule["name"]["as"], series.group(1), labels["namespace"], labels["pod"], query)


def readme_rules(readme: Path = README) -> dict[str, Rule]:
    """The rules of the YAML block under "Scaling on queue depth", by metric name."""
    section = readme.read_text().split("\n## Scaling on queue depth\n", 1)[1].split("\n## ")[0]
    block = re.search(r"^```yaml\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    if not block:
        raise RuleError(f"{readme}: no yaml block under 'Scaling on queue depth'")
    config = yaml.safe_load(block.group(1))
    if set(config) != {"rules"}:
        raise RuleError(f"unsupported adapter config fields: {sorted(config)}")
    rules = [parse_rule(r) for r in config["rules"]]
    return {r.metric: r for r in rules}


def quantity(value: float) -> str:
    """``value`` as prometheus-adapter answers it: NewMilliQuantity(int64(value*1000)), printed
    in Kubernetes' canonical form (1.5 -> "1500m", 12 -> "12", 12000 -> "12k"); NaN is 0."""
    if math.isnan(value):
        return "0"
    milli = int(value * 1000)  # truncates toward zero, as Go's int64 conversion
    if milli % 1000:
        return f"{milli}m"
    whole = milli // 1000
    for suffix, exponent in SUFFIXES:
        if whole and whole % 10**exponent == 0:
            return f"{whole // 10**exponent}{suffix}"
    return str(whole)


def status(code: int, reason: str, message: str) -> Doc:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class HTTPError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status(code, reason, message)


class CustomMetricsAPI:
    def __init__(self, rules: dict[str, Rule], prometheus: str, api_server: str, token: str):
        self.rules = rules
        self.prometheus = httpx.Client(base_url=prometheus, timeout=10)
        # The test cluster's API server has its own self-signed certificate.
        self.api = httpx.Client(
            base_url=api_server,
            headers={"Authorization": f"Bearer {token}"},
            verify=False,
            timeout=10,
        )

    def discovery(self) -> Doc:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": GROUP_VERSION,
            "resources": [
                {
                    "name": f"pods/{metric}",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "MetricValueList",
                    "verbs": ["get"],
                }
                for metric in self.rules
            ],
        }

    def _pods(self, namespace: str, selector: str | None) -> list[str]:
        params = {"labelSelector": selector} if selector else {}
        response = self.api.get(f"/api/v1/namespaces/{namespace}/pods", params=params)
        response.raise_for_status()
        return [p["metadata"]["name"] for p in response.json()["items"]]

    def _values(self, rule: Rule, query: str) -> dict[str, float]:
        response = self.prometheus.get("/api/v1/query", params={"query": query})
        response.raise_for_status()
        data = response.json()["data"]
        if data["resultType"] != "vector":
            raise HTTPError(500, "InternalError", f"{query} gave a {data['resultType']}")
        return {s["metric"].get(rule.pod_label, ""): float(s["value"][1]) for s in data["result"]}

    def metric(self, namespace: str, name: str, metric: str, params: dict[str, str]) -> Doc:
        rule = self.rules.get(metric)
        if rule is None:
            raise HTTPError(
                404, "NotFound", f"the server could not find the metric {metric} for pods"
            )
        if params.get("metricLabelSelector"):
            raise HTTPError(400, "BadRequest", "metricLabelSelector is not supported here")
        selector = params.get("labelSelector")
        pods = self._pods(namespace, selector) if name == "*" else [name]
        if not pods:
            raise HTTPError(404, "NotFound", f"no pods in {namespace} match {selector!r}")
        query = rule.query(namespace, pods)
        print(f"query {namespace}/pods/{name} labelSelector={selector!r}: {query}", flush=True)
        values = self._values(rule, query)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        # As the adapter: a pod Prometheus has no value for is left out, not answered as 0.
        kept = [pod for pod in pods if pod in values and not math.isinf(values[pod])]
        items: list[Doc] = [
            {
                "describedObject": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": pod,
                    "apiVersion": "/v1",
                },
                "metricName": metric,
                "timestamp": now,
                "value": quantity(values[pod]),
                "selector": None,
            }
            for pod in kept
        ]
        answer = " ".join(f"{pod}={quantity(values[pod])}" for pod in kept) or "-"
        left_out = ",".join(pod for pod in pods if pod not in kept) or "-"
        print(f"answer {namespace} {metric}: {answer} left out: {left_out}", flush=True)
        if name != "*" and not items:
            raise HTTPError(
                404, "NotFound", f"the server could not find the metric {metric} for pods {name}"
            )
        return {
            "kind": "MetricValueList",
            "apiVersion": GROUP_VERSION,
            "metadata": {},
            "items": items,
        }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the aggregator keeps its connections open
    server: Server

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = unquote(url.path).rstrip("/")
        api = self.server.api
        try:
            if path == PREFIX:
                self._send(200, api.discovery())
                return
            match = METRIC_PATH.match(path)
            if not match:
                raise HTTPError(404, "NotFound", f"the server could not find {path}")
            namespace, name, metric = match.groups()
            self._send(200, api.metric(namespace, name, metric, params))
        except HTTPError as exc:
            print(f"answer {path}: {exc.status['code']} {exc}", flush=True)
            self._send(exc.status["code"], exc.status)
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            print(f"answer {path}: 500 {exc!r}", flush=True)
            self._send(500, status(500, "InternalError", repr(exc)))

    def _send(self, code: int, body: Doc) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # the aggregator's discovery polls would bury the metric lines printed above


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: CustomMetricsAPI, cert_dir: Path):
        super().__init__(address, Handler)
        self.api = api
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self_signed(cert_dir))
        context.set_alpn_protocols(["http/1.1"])
        # The handshake then happens in the request's thread, not in the accept loop.
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )


def self_signed(cert_dir: Path) -> tuple[Path, Path]:
    """A certificate and key made with ``openssl``; the APIService skips verifying it."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert, key = cert_dir / "tls.crt", cert_dir / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-nodes", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", str(key), "-out", str(cert),
         "-days", "30", "-subj", f"/CN={SERVICE}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def registration(namespace: str, ip: str, port: int) -> list[Doc]:
    """What registers a stand-in listening on ``ip:port`` with the kube-apiserver's aggregator:
    a selector-less Service and its Endpoints, and the APIService pointing at that Service."""
    ports = {"name": "https", "protocol": "TCP"}
    meta = {"name": SERVICE, "namespace": namespace}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"ports": [{**ports, "port": 443, "targetPort": port}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": meta,
            "subsets": [{"addresses": [{"ip": ip}], "ports": [{**ports, "port": port}]}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"v1beta1.{GROUP}"},
            "spec": {
                "group": GROUP,
                "version": "v1beta1",
                "service": {"name": SERVICE, "namespace": namespace, "port": 443},
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--listen", required=True, help="IP:PORT (port 0: any free one)")
    parser.add_argument("--prometheus", required=True, help="Prometheus' base URL")
    parser.add_argument("--api-server", required=True, help="the kube-apiserver's base URL")
    parser.add_argument("--token-file", required=True, type=Path, help="its bearer token")
    parser.add_argument("--cert-dir", required=True, type=Path, help="for tls.crt and tls.key")
    parser.add_argument("--readme", type=Path, default=README, help="where the rule is")
    args = parser.parse_args(argv)
    rules = readme_rules(args.readme)
    token = args.token_file.read_text().strip()
    api = CustomMetricsAPI(rules, args.prometheus, args.api_server, token)
    host, _, port = args.listen.rpartition(":")
    server = Server((host, int(port)), api, args.cert_dir)
    bound = server.server_address[1]
    for rule in rules.values():
        print(f"rule {rule.metric}: {rule.metrics_query}", flush=True)
    print(f"serving {GROUP_VERSION} on https://{host}:{bound}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
