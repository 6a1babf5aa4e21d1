"""tests/helpers/custom_metrics_api.py answers the custom metrics API as prometheus-adapter
would with the rule in deploy/kubernetes/README.md (issue #25).

``make k8s-test``'s queue-depth HPA reads its input through this stand-in; it is only worth
something while the PromQL it sends is the one the adapter would render from the documented
rule and its answers are what the adapter would give the HPA. Here it runs as its own process
(the command line the cluster test uses) against a fake API server and a fake Prometheus.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.helpers.custom_metrics_api import (
    GROUP_VERSION,
    RuleError,
    parse_rule,
    quantity,
    readme_rules,
    registration,
)
from tests.helpers.fake_http import FakeJSONServer, Request
from tests.helpers.support import ROOT

METRIC = "modelserve_queue_depth"
PODS = {"app=two": ["a", "b"], "app=four": ["a", "b", "c", "d"]}
VALUES = {"a": "1.5", "b": "0", "c": "12", "x": "7"}  # d has no series
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _api_server(request: Request) -> tuple[int, Any]:
    assert request.authorization == "Bearer api-token"
    assert request.path == "/api/v1/namespaces/ns/pods"
    names = PODS[request.query["labelSelector"]]
    return 200, {"kind": "PodList", "items": [{"metadata": {"name": n}} for n in names]}


def _prometheus(request: Request) -> tuple[int, Any]:
    assert request.path == "/api/v1/query"
    match = re.search(r'pod=~?"([^"]*)"', request.query["query"])
    assert match, request.query
    wanted = match.group(1).split("|")
    result = [
        {"metric": {"namespace": "ns", "pod": pod}, "value": [1700000000.5, VALUES[pod]]}
        for pod in wanted
        if pod in VALUES
    ]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


@dataclass
class StandIn:
    url: str
    client: httpx.Client
    prometheus: FakeJSONServer
    api_server: FakeJSONServer
    lines: queue.Queue[str]

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.client.get(f"{self.url}/apis/{GROUP_VERSION}{path}", params=params)

    def printed(self) -> list[str]:
        out = []
        while not self.lines.empty():
            out.append(self.lines.get())
        return out


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    tmp = tmp_path_factory.mktemp("custom-metrics")
    token = tmp / "token"
    token.write_text("api-token\n")
    with FakeJSONServer(_prometheus) as prom, FakeJSONServer(_api_server) as api:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.custom_metrics_api", "--listen", "127.0.0.1:0",
             "--prometheus", prom.url, "--api-server", api.url, "--token-file", str(token),
             "--cert-dir", str(tmp / "certs")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            assert proc.stdout
            for line in proc.stdout:
                print(line, end="")  # shown with the test's output
                lines.put(line.rstrip("\n"))

        threading.Thread(target=read, daemon=True).start()
        try:
            while (line := lines.get(timeout=15)) and not line.startswith("serving "):
                pass
            url = line.rsplit(" ", 1)[1]
            with httpx.Client(verify=False, timeout=10) as client:
                yield StandIn(url, client, prom, api, lines)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_discovery_lists_the_readme_rules_metric_for_pods(stand_in: StandIn) -> None:
    response = stand_in.get("")
    assert response.status_code == 200
    assert response.json() == {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "custom.metrics.k8s.io/v1beta1",
        "resources": [
            {
                "name": f"pods/{METRIC}",
                "singularName": "",
                "namespaced": True,
                "kind": "MetricValueList",
                "verbs": ["get"],
            }
        ],
    }


def _values(body: dict[str, Any]) -> dict[str, str]:
    assert body["kind"] == "MetricValueList"
    assert (body["apiVersion"], body["metadata"]) == (GROUP_VERSION, {})
    for item in body["items"]:
        described = item["describedObject"]
        assert {k: v for k, v in described.items() if k != "name"} == {
            "kind": "Pod",
            "namespace": "ns",
            "apiVersion": "/v1",
        }
        assert (item["metricName"], item["selector"]) == (METRIC, None)
        assert TIMESTAMP.match(item["timestamp"]), item
    return {i["describedObject"]["name"]: i["value"] for i in body["items"]}


def test_pods_of_a_selector_are_queried_as_the_adapter_renders_the_rule(
    stand_in: StandIn,
) -> None:
    stand_in.printed()
    response = stand_in.get(f"/namespaces/ns/pods/*/{METRIC}", labelSelector="app=two")
    assert response.status_code == 200, response.text
    assert stand_in.api_server.requests[-1].query == {"labelSelector": "app=two"}
    query = 'max by (pod) (modelserve_queue_depth{namespace="ns",pod=~"a|b"})'
    assert stand_in.prometheus.requests[-1].query == {"query": query}
    assert _values(response.json()) == {"a": "1500m", "b": "0"}
    printed = stand_in.printed()
    assert any(query in line for line in printed), printed
    assert any("a=1500m b=0" in line for line in printed), printed


def test_a_pod_prometheus_has_no_value_for_is_left_out(stand_in: StandIn) -> None:
    response = stand_in.get(f"/namespaces/ns/pods/%2A/{METRIC}", labelSelector="app=four")
    assert response.status_code == 200, response.text
    assert _values(response.json()) == {"a": "1500m", "b": "0", "c": "12"}


def test_one_named_pod_is_matched_by_equality(stand_in: StandIn) -> None:
    response = stand_in.get(f"/namespaces/ns/pods/c/{METRIC}")
    assert response.status_code == 200, response.text
    query = 'max by (pod) (modelserve_queue_depth{namespace="ns",pod="c"})'
    assert stand_in.prometheus.requests[-1].query == {"query": query}
    assert _values(response.json()) == {"c": "12"}
    assert stand_in.get(f"/namespaces/ns/pods/d/{METRIC}").status_code == 404


def test_unknown_metric_is_a_404_status(stand_in: StandIn) -> None:
    response = stand_in.get("/namespaces/ns/pods/*/other_metric", labelSelector="app=two")
    assert response.status_code == 404
    body = response.json()
    assert (body["kind"], body["status"], body["reason"], body["code"]) == (
        "Status",
        "Failure",
        "NotFound",
        404,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "0"), (1.5, "1500m"), (12, "12"), (0.001, "1m"), (12000, "12k"), (-2.5, "-2500m")],
)
def test_quantity_is_the_adapters_milli_value_in_canonical_form(
    value: float, expected: str
) -> None:
    assert quantity(value) == expected
    assert quantity(float("nan")) == "0"


def test_the_readme_rule_is_read_and_anything_else_is_refused() -> None:
    (rule,) = readme_rules().values()
    assert (rule.metric, rule.series, rule.namespace_label, rule.pod_label) == (
        METRIC,
        METRIC,
        "namespace",
        "pod",
    )
    shipped: dict[str, Any] = {
        "seriesQuery": 'modelserve_queue_depth{namespace!="",pod!=""}',
        "resources": {
            "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        },
        "name": {"as": METRIC},
        "metricsQuery": "max by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})",
    }
    assert parse_rule(shipped) == rule
    changes: list[dict[str, Any]] = [
        {"seriesFilters": []},
        {"resources": {"template": "<<.Resource>>"}},
        {"name": {"matches": "^(.*)$", "as": "x"}},
        {"metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>) * <<.Other>>"},
        {"resources": {"overrides": {"namespace": {"resource": "namespace"}}}},
        {"metricsQuery": "max by (<<.GroupBy>>) (<<.Series>>{<< .LabelMatchers | x >>})"},
    ]
    for change in changes:
        with pytest.raises(RuleError):
            parse_rule({**shipped, **change})


def test_registration_points_the_apiservice_at_the_listening_address() -> None:
    service, endpoints, apiservice = registration("ns", "10.211.0.1", 6444)
    assert (service["kind"], service["metadata"]) == (
        "Service",
        {"name": "custom-metrics-api", "namespace": "ns"},
    )
    assert "selector" not in service["spec"]
    assert endpoints["subsets"] == [
        {
            "addresses": [{"ip": "10.211.0.1"}],
            "ports": [{"name": "https", "protocol": "TCP", "port": 6444}],
        }
    ]
    assert apiservice["metadata"]["name"] == "v1beta1.custom.metrics.k8s.io"
    assert apiservice["spec"]["service"] == {
        "name": "custom-metrics-api",
        "namespace": "ns",
        "port": 443,
    }
    assert service["spec"]["ports"][0]["port"] == 443
