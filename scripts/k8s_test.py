"""``make k8s-test``: the shipped Kubernetes manifests on a real two-node cluster (issue #25).

Phases (each timed): the cluster binaries (built once from Debian 12's source package and
cached, scripts/k8s_build.py), the image (as ``make stack-test`` builds it), the cluster (etcd,
control plane, two nodes with a dockerd each, scripts/k8s_cluster.py), the image in both
nodes, a PostgreSQL for the shared prediction log (scripts/k8s_postgres.py), then
deploy/kubernetes/base through the 1.20 overlay (deploy/kubernetes/test-1.20) and the checks:

1. two pods Ready on two nodes; 200 requests through the Service reach both, each answer the
   artifact's own prediction;
2. a rollout (``kubectl set image``) under c=8 traffic fails no request; a scratch copy of the
   Deployment without the preStop wait, rolled the same way, fails some (the wait is what
   makes the first pass);
3. a pod deleted under c=8 traffic: at most its in-flight requests fail, a replacement is
   Ready, and every acknowledged prediction is in the shared prediction log;
4. the shared registry (a ``ReadOnlyMany`` claim; on this one machine a hostPath volume stands
   in for a network filesystem): ``modelserve promote`` of version 2 reaches every pod within
   ``MODELSERVE_POLL_INTERVAL_S`` plus a second with no failed request, ``rollback`` likewise.

Every request is sent from inside a node's network namespace (scripts/k8s_load.py), where
cluster addresses exist. Teardown stops only what was started and removes the namespaces and
files it made. Exit 0 on success or on a skip (``k8s-test SKIPPED: <why>``, only where the
cluster cannot start), 1 on a failure. Run: ``python -m scripts.k8s_test``.
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from app.config import Settings
from bench.servers import WrkResult
from scripts import k8s_build, k8s_nodes, k8s_postgres, k8s_prometheus
from scripts.k8s_cluster import API_PORT, Cluster, NoClusterError
from scripts.k8s_manifests import render
from scripts.k8s_nodes import Node
from scripts.k8s_procs import netns_cmd
from scripts.stack_test import IMAGE, build_image
from scripts.stack_test_engine import (
    ROOT,
    Engine,
    NoEngineError,
    build_stand_ins,
    example_and_truth,
    install_packages,
    run,
    wait_until,
)
from tests.helpers import custom_metrics_api
from tests.helpers.queries import panels, substitute

NAMESPACE = "modelserve-k8s-test"
# kubectl reads HPAs at autoscaling/v1, whose status has no per-metric values.
HPA_V2 = "horizontalpodautoscalers.v2beta2.autoscaling"
OVERLAY = ROOT / "deploy/kubernetes/test-1.20"
SELECTOR = "app.kubernetes.io/name=modelserve,app.kubernetes.io/component=server"
CONCURRENCY = 8
POLL_S = Settings.model_fields["poll_interval_s"].default
# The panels that traffic alone fills (the others need labels, a canary, a shadow or errors).
TRAFFIC_PANELS = {
    "Requests per second by route and status",
    "HTTP latency p50 / p95 / p99",
    "Inference latency p50 / p95 / p99",
    "Serving version",
    "Predictions by class",
    "Batch size p50 / p95",
}
DASHBOARD_VARIABLES = {
    "datasource": "prometheus",
    "model": "breast-cancer",
    "version": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
}
QUEUE_METRIC = "modelserve_queue_depth"
SD_LISTEN = "127.0.0.1:9091"
METRICS_API_PORT = 6444
SCALE_DOWN_S = 30
CRD_KINDS = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}

Doc = dict[str, Any]


def crds() -> list[Doc]:
    """The Prometheus Operator's two kinds, schema-less: the operator is not packaged here."""
    return [
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.monitoring.coreos.com"},
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
        for kind, plural in CRD_KINDS.items()
    ]


def deployment_of(docs: list[Doc]) -> Doc:
    (found,) = [d for d in docs if d["kind"] == "Deployment"]
    return found


def server_container(deployment: Doc) -> Doc:
    (found,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]]
    return dict(found)


class Load:
    """``scripts.k8s_load load`` running in a node until stopped; its JSON result."""

    def __init__(self, node: Node, url: str, concurrency: int = CONCURRENCY) -> None:
        cmd = [sys.executable, "-u", "-m", "scripts.k8s_load", "load", url, str(concurrency)]
        self.proc = subprocess.Popen(
            netns_cmd(node.netns, *cmd),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().strip()
        if first != "started":
            raise RuntimeError(f"load did not start: {first} {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=120)
        if self.proc.returncode != 0:
            raise RuntimeError(f"load exited {self.proc.returncode}: {err[-2000:]}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


class Wrk:
    """wrk in a node, one request per connection (kube-proxy spreads connections), until
    stopped: a rate a Python client cannot reach, so a short gap in a rollout shows."""

    def __init__(self, node: Node, url: str, body: Path, concurrency: int = CONCURRENCY) -> None:
        cmd = ["wrk", "-t2", f"-c{concurrency}", "-d3600s", "-H", "Connection: close", "-s",
               str(ROOT / "bench/post.lua"), f"{url}/predict", "--", str(body)]  # fmt: skip
        self.proc = subprocess.Popen(
            netns_cmd(node.netns, *cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def stop(self) -> WrkResult:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        try:
            return WrkResult.parse(out)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc} {err[-1000:]}") from exc


def wrk_summary(result: WrkResult) -> str:
    return (
        f"wrk: {result.requests} requests, {result.non_2xx} not 2xx, "
        f"{result.socket_errors} socket errors"
    )


def summary(result: dict[str, Any]) -> str:
    other = sum(result["other"].values())
    text = f"{result['ok']} answered exactly, {other} failed"
    if other:
        text += f" ({', '.join(f'{n}x {what[:120]}' for what, n in result['other'].items())})"
    return text


class K8sTest:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.docs = render(OVERLAY)
        self.image = server_container(deployment_of(self.docs))["image"]
        self.rollout_image = f"{self.image}-rollout"
        self.pg_sockets = cluster.root / "pg-sockets"
        self.registry = cluster.root / "registry"
        self.body = cluster.root / "row.json"
        example, _ = example_and_truth()
        self.body.write_text(json.dumps({"instances": [example]}))
        self.service_url = ""
        self.prometheus_url = ""

    # --- helpers -------------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        return self.cluster.kubectl("-n", NAMESPACE, *args, stdin=stdin, timeout=timeout)

    def apply(self, docs: list[Doc]) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def in_node(self, node: Node, *args: str, timeout: float = 300) -> Any:
        cmd = [sys.executable, "-m", "scripts.k8s_load", *args]
        proc = subprocess.run(
            netns_cmd(node.netns, *cmd),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"k8s_load {args[0]} exited {proc.returncode}: {proc.stderr}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def pods(self) -> list[Doc]:
        """The server pods that are not terminating."""
        items = self.cluster.get("pods", "-n", NAMESPACE, "-l", SELECTOR)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    @staticmethod
    def ready(pod: Doc) -> bool:
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        return conditions.get("Ready") == "True"

    def ready_pods(self, count: int | None = None) -> list[Doc]:
        """Every live pod Ready (and ``count`` of them, if given), else []."""
        pods = self.pods()
        if not pods or not all(self.ready(p) for p in pods):
            return []
        return pods if count is None or len(pods) == count else []

    def rollout(self, timeout: float = 300) -> float:
        start = time.monotonic()
        self.kubectl("rollout", "status", "deployment/modelserve", f"--timeout={timeout:.0f}s",
                     timeout=timeout + 30)  # fmt: skip
        wait_until("the rollout's old pods gone", lambda: self.ready_pods(2), 120, every=1)
        return time.monotonic() - start

    def psql(self, script: str) -> str:
        """``script`` run by psql as the database superuser, over the run's socket."""
        psql = k8s_postgres.bindir() / "psql"
        cmd = [str(psql), "-h", str(self.pg_sockets), "-p", str(k8s_postgres.PORT), "-U",
               "postgres", "-d", k8s_postgres.DB, "-v", "ON_ERROR_STOP=1", "-qtA"]  # fmt: skip
        proc = subprocess.run(
            k8s_postgres.as_postgres(*cmd), input=script, capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def missing_from_log(self, ids: list[str]) -> int:
        script = "\n".join(
            [
                "CREATE TEMP TABLE acked (id text);",
                "COPY acked FROM STDIN;",
                *ids,
                "\\.",
                "SELECT count(*) FROM acked LEFT JOIN predictions p USING (id) WHERE p.id IS NULL;",
                "",
            ]
        )
        return int(self.psql(script).splitlines()[-1])

    # --- phases --------------------------------------------------------------------------------

    def images(self) -> list[str]:
        return k8s_nodes.load_images(self.cluster.nodes, IMAGE, (self.image, self.rollout_image))

    def deploy(self) -> list[str]:
        cluster = self.cluster
        url = k8s_postgres.start(cluster.api_node, cluster.root, cluster.procs)
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.namespaces.add(NAMESPACE)
        self.kubectl(
            "create", "secret", "generic", "modelserve-database", f"--from-literal=url={url}"
        )
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(crds()))
        wait_until(
            "the ServiceMonitor and PrometheusRule kinds served",
            lambda: (
                "servicemonitors"
                in cluster.kubectl("api-resources", "--api-group=monitoring.coreos.com")
            ),
            60,
            every=1,
        )
        start = time.monotonic()
        self.apply(self.docs)
        pods = wait_until("two server pods Ready", lambda: self.ready_pods(2), 300, every=2)
        nodes = sorted({p["spec"]["nodeName"] for p in pods})
        service = self.cluster.get("service", "modelserve", "-n", NAMESPACE)
        self.service_url = f"http://{service['spec']['clusterIP']}:8000"
        kinds = sorted({d["kind"] for d in self.docs})
        return [
            f"PostgreSQL on {cluster.api_node.ip}; Secret modelserve-database holds its URL",
            f"applied {len(self.docs)} objects ({', '.join(kinds)}) "
            f"from {OVERLAY.relative_to(ROOT)}",
            f"{len(pods)} pods Ready on {', '.join(nodes)} in {time.monotonic() - start:.0f} s; "
            f"Service at {self.service_url}",
        ]

    def check_spread(self) -> list[str]:
        pods = self.ready_pods(2)
        ips = {p["status"]["podIP"]: p["spec"]["nodeName"] for p in pods}
        client = self.cluster.nodes[1]
        before = self.in_node(client, "count", *ips)
        result = self.in_node(client, "predict", self.service_url, "200", str(CONCURRENCY))
        after = self.in_node(client, "count", *ips)
        assert result["ok"] == 200 and not result["other"], result
        served = {ip: after[ip] - before[ip] for ip in ips}
        by_node = {ips[ip]: n for ip, n in served.items()}
        assert sum(served.values()) == 200, served
        assert len({ips[ip] for ip, n in served.items() if n > 0}) == 2, by_node
        return [
            f"200 requests from {client.name} through the Service: each answered "
            f"{result['truth']}, the artifact's prediction",
            "served by " + ", ".join(f"{ips[ip]} ({ip}) {n:.0f}" for ip, n in served.items()),
        ]

    def rolled_under_load(self, change: Callable[[], object]) -> tuple[dict[str, Any], float]:
        """``change`` rolled out under c=8 exact-answer clients plus wrk at c=8."""
        load = Load(self.cluster.nodes[1], self.service_url)
        wrk = Wrk(self.cluster.nodes[0], self.service_url, self.body)
        try:
            time.sleep(2)
            change()
            seconds = self.rollout()
            time.sleep(2)
        finally:
            result = load.stop()
            result["wrk"] = wrk.stop()
        return result, seconds

    def set_image(self, image: str) -> Callable[[], object]:
        return functools.partial(
            self.kubectl, "set", "image", "deployment/modelserve", f"modelserve={image}"
        )

    def check_rollout(self) -> list[str]:
        result, seconds = self.rolled_under_load(self.set_image(self.rollout_image))
        assert result["ok"] > 0 and not result["other"], summary(result)
        assert result["wrk"].failed == 0, wrk_summary(result["wrk"])
        lines = [
            f"set image {self.rollout_image}: rolled in {seconds:.0f} s; under c={CONCURRENCY} "
            f"{summary(result)}; {wrk_summary(result['wrk'])}"
        ]
        # The same rollout from a scratch copy without its preStop wait: a pod stops listening
        # as it is deleted, while the Service still sends it connections until the endpoint
        # change reaches kube-proxy (batched by up to ENDPOINTS_BATCH_S). (Without the readiness
        # probe instead, 0 to 8 of some 4,000 requests failed, and each rollout took minutes:
        # the server holds requests until its model is loaded, so that copy shows little.)
        said, failed = self.rollouts_without_prestop()
        lines += said
        assert failed, lines
        self.apply([deployment_of(self.docs)])
        self.rollout()
        return lines

    def rollouts_without_prestop(self) -> tuple[list[str], bool]:
        """Up to three rollouts under load of a copy without the preStop wait, until one fails."""
        scratch = copy.deepcopy(deployment_of(self.docs))
        container = scratch["spec"]["template"]["spec"]["containers"][0]
        del container["lifecycle"]
        container["image"] = self.rollout_image
        self.apply([scratch])
        self.rollout()
        lines = []
        for attempt, image in enumerate((self.image, self.rollout_image, self.image), 1):
            result, _ = self.rolled_under_load(self.set_image(image))
            lines.append(
                f"scratch copy without its preStop wait, rollout {attempt}: {summary(result)}; "
                f"{wrk_summary(result['wrk'])}"
            )
            if result["wrk"].failed + sum(result["other"].values()):
                return lines, True
        return lines, False

    def check_pod_deleted(self) -> list[str]:
        victim = self.ready_pods(2)[0]
        name = victim["metadata"]["name"]
        load = Load(self.cluster.nodes[1], self.service_url)
        try:
            time.sleep(3)
            start = time.monotonic()
            self.kubectl("delete", "pod", name, "--wait=false")
            pods = wait_until(
                "a replacement Ready",
                lambda: [p for p in self.ready_pods(2) if p["metadata"]["name"] != name],
                180,
                every=1,
            )
            replaced = time.monotonic() - start
            time.sleep(3)
        finally:
            result = load.stop()
        failed = sum(result["other"].values())
        assert failed <= CONCURRENCY, summary(result)
        assert len(pods) == 2 and result["ok"] > 0, (pods, result)
        ids = result["ids"]
        missing = wait_until(
            "every acknowledged prediction in the shared log",
            lambda: self.missing_from_log(ids) == 0 or None,
            30,
            every=1,
        )
        assert missing
        return [
            f"deleted {name} under c={CONCURRENCY}: {summary(result)} (at most {CONCURRENCY} "
            f"in flight); a replacement Ready in {replaced:.0f} s",
            f"all {len(ids)} acknowledged prediction ids are rows of the shared PostgreSQL log",
        ]

    def shared_registry(self) -> list[str]:
        shutil.copytree(ROOT / "models", self.registry)
        spec = self.registry / "breast-cancer/train.yaml"
        run(sys.executable, "-m", "app.cli", "train", str(spec), "--registry", str(self.registry),
            timeout=300)  # fmt: skip
        run("chmod", "-R", "a+rX", str(self.registry))
        volume_name = f"{NAMESPACE}-registry"
        storage: Doc = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume_name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                # Both nodes are this machine: the same directory stands in for a network share.
                "hostPath": {"path": str(self.registry), "type": "Directory"},
                "claimRef": {"namespace": NAMESPACE, "name": "modelserve-registry"},
            },
        }
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "modelserve-registry"},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": volume_name,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        self.cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(storage))
        self.apply([claim])
        shared = copy.deepcopy(deployment_of(self.docs))
        pod = shared["spec"]["template"]["spec"]
        del pod["initContainers"]  # nothing to copy: the claim is the registry
        for volume in pod["volumes"]:
            if volume["name"] == "registry":
                volume.clear()
                volume.update(
                    name="registry",
                    persistentVolumeClaim={"claimName": "modelserve-registry", "readOnly": True},
                )
        for mount in pod["containers"][0]["volumeMounts"]:
            if mount["name"] == "registry":
                mount["readOnly"] = True
        result, seconds = self.rolled_under_load(lambda: self.apply([shared]))
        assert not result["other"], summary(result)
        return [
            f"registry {self.registry} (versions 1 and 2) as a ReadOnlyMany claim (hostPath: "
            "both nodes are this machine)",
            f"the Deployment moved onto it under c={CONCURRENCY} in {seconds:.0f} s: "
            f"{summary(result)}",
        ]

    def moved(self, command: str, version: str) -> str:
        ips = [p["status"]["podIP"] for p in self.ready_pods(2)]
        load = Load(self.cluster.nodes[1], self.service_url)
        watch = subprocess.Popen(
            netns_cmd(self.cluster.nodes[0].netns, sys.executable, "-u", "-m", "scripts.k8s_load",
                      "versions", str(POLL_S + 30), version, *ips),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert watch.stdout is not None
            assert watch.stdout.readline().strip() == "started"
            args = ["breast-cancer"] + (["2"] if command == "promote" else [])
            run(sys.executable, "-m", "app.cli", command, *args, "--registry", str(self.registry))
            # From the moment the command changed the alias, not from its start (imports).
            start = (self.registry / "breast-cancer/aliases.json").stat().st_mtime
            out, err = watch.communicate(timeout=POLL_S + 60)
            time.sleep(1)
        finally:
            result = load.stop()
        first = json.loads(out.strip().splitlines()[-1])
        late = {ip: at for ip, at in first.items() if at is None or at - start > POLL_S + 1}
        assert not late, (first, start, err)
        assert not result["other"], summary(result)
        after = ", ".join(f"{at - start:.1f} s" for at in first.values())
        return (
            f"modelserve {command}: every pod answered version {version} after {after} "
            f"(limit {POLL_S + 1:.0f} s); under c={CONCURRENCY}: {summary(result)}, "
            f"answers by version {result['versions']}"
        )

    def check_promote(self) -> list[str]:
        return [self.moved("promote", "2"), self.moved("rollback", "1")]

    # --- Prometheus ------------------------------------------------------------------------------

    def query(self, *exprs: str) -> list[list[Doc]]:
        found: list[list[Doc]] = self.in_node(
            self.cluster.api_node, "query", self.prometheus_url, *exprs, timeout=60
        )
        return found

    def start_prometheus(self) -> list[str]:
        """Debian's Prometheus in node 1, finding the pods as the ServiceMonitor says."""
        node, work = self.cluster.api_node, self.cluster.root / "prometheus"
        work.mkdir()
        token = work / "token"
        token.write_text(self.cluster.token)
        rule_files = []
        for doc in (d for d in self.docs if d["kind"] == "PrometheusRule"):
            path = work / f"{doc['metadata']['name']}.rules.yml"
            path.write_text(yaml.safe_dump(k8s_prometheus.rules(doc)))
            rule_files.append(path)
        (monitor,) = [d for d in self.docs if d["kind"] == "ServiceMonitor"]
        api = f"https://{node.ip}:{API_PORT}"
        # Debian's Prometheus is built without kubernetes_sd_configs: the endpoints role's
        # targets and meta labels come from the API server over http_sd_configs instead, and
        # the operator's relabelling runs on them unchanged (scripts/k8s_prometheus.py).
        self.cluster.procs.start(
            "prometheus-sd",
            [sys.executable, "-u", "-m", "scripts.k8s_prometheus", "--listen", SD_LISTEN,
             "--api-server", api, "--token-file", str(token), "--namespace", NAMESPACE],
            netns=node.netns,
            cwd=ROOT,
        )  # fmt: skip
        config = k8s_prometheus.config(
            monitor, NAMESPACE, api, token, rule_files, http_sd_url=f"http://{SD_LISTEN}/"
        )
        # kube-prometheus-stack's defaults are 30 s; this test has minutes, not hours.
        config["global"] = {"scrape_interval": "15s", "evaluation_interval": "15s"}
        path = work / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        run("promtool", "check", "config", str(path))
        self.prometheus_url = f"http://{node.ip}:9090"
        self.cluster.procs.start(
            "prometheus",
            ["prometheus", f"--config.file={path}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address={node.ip}:9090"],
            netns=node.netns,
        )  # fmt: skip
        targets = wait_until("the pods up in Prometheus", self.pods_up, 120, every=3)
        return [
            "the endpoints role's targets from the API server (http_sd_configs), relabelled as the "
            f"Prometheus Operator does for the ServiceMonitor; rules from "
            f"{len(rule_files)} PrometheusRule(s); promtool check config passed",
            f'up{{job="modelserve"}} == 1 for {", ".join(targets)}',
        ]

    def pods_up(self) -> list[str]:
        names = {p["metadata"]["name"] for p in self.ready_pods()}
        (up,) = self.query('up{job="modelserve"} == 1')
        found = {series["metric"].get("pod", "") for series in up}
        return sorted(found) if names and names <= found else []

    def check_prometheus(self) -> list[str]:
        pods = sorted(wait_until("every pod an up target", self.pods_up, 60, every=3))
        per_pod = [
            'sum by (pod) (modelserve_predictions_total{job="modelserve"})',
            'sum by (pod) (http_requests_total{job="modelserve"})',
            'max by (pod) (modelserve_model_info{job="modelserve"})',
        ]
        for expr, result in zip(per_pod, self.query(*per_pod), strict=True):
            found = {series["metric"].get("pod") for series in result}
            assert set(pods) <= found, (expr, pods, found)
        (board,) = [
            d
            for d in self.docs
            if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"].get("labels", {})
        ]
        dashboard = json.loads(next(iter(board["data"].values())))
        every = [substitute(t["expr"], DASHBOARD_VARIABLES) for p in panels(dashboard)
                 for t in p["targets"]]  # fmt: skip
        self.query(*every)  # each one runs: an error is a RuntimeError here
        with_data = wait_until(
            "the traffic panels with data", lambda: self.traffic(dashboard), 180, every=5
        )
        return [
            f"{len(pods)} pods, each an up target with its own prediction, HTTP and model-info "
            "series (label pod)",
            f"all {len(every)} dashboard queries run; with data: {', '.join(with_data)}",
        ]

    def traffic(self, dashboard: Doc) -> list[str]:
        """The traffic panels, if every one has data for its every query."""
        targets = [
            (p["title"], substitute(t["expr"], DASHBOARD_VARIABLES))
            for p in panels(dashboard)
            if p["title"] in TRAFFIC_PANELS
            for t in p["targets"]
        ]
        assert {title for title, _ in targets} == TRAFFIC_PANELS, "the dashboard changed"
        results = self.query(*(expr for _, expr in targets))
        empty = {title for (title, _), result in zip(targets, results, strict=True) if not result}
        return sorted(TRAFFIC_PANELS) if not empty else []

    # --- autoscaling -----------------------------------------------------------------------------

    def hpa_state(self) -> tuple[int, int, str]:
        status = self.cluster.get(HPA_V2, "modelserve", "-n", NAMESPACE)["status"]
        values = [
            m["pods"]["current"]["averageValue"]
            for m in status.get("currentMetrics") or []
            if m.get("type") == "Pods"
        ]
        return status.get("currentReplicas", 0), status.get("desiredReplicas", 0), ",".join(values)

    def check_autoscaling(self) -> list[str]:
        node, port = self.cluster.api_node, METRICS_API_PORT
        token = self.cluster.root / "prometheus/token"
        self.cluster.procs.start(
            "custom-metrics-api",
            [sys.executable, "-u", "-m", "tests.helpers.custom_metrics_api",
             "--listen", f"{node.ip}:{port}", "--prometheus", self.prometheus_url,
             "--api-server", f"https://{node.ip}:{API_PORT}", "--token-file", str(token),
             "--cert-dir", str(self.cluster.root / "custom-metrics")],
            netns=node.netns,
            cwd=ROOT,
        )  # fmt: skip
        registration = custom_metrics_api.registration(NAMESPACE, node.ip, port)
        self.cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(registration))
        path = f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/*/{QUEUE_METRIC}"

        def answered() -> Any:
            try:  # NotFound until the aggregator has discovered the APIService
                return json.loads(self.cluster.kubectl("get", "--raw", path))["items"]
            except RuntimeError as exc:
                raise ValueError(str(exc)) from exc

        wait_until("the custom metrics API answering for the pods", answered, 90, every=3)
        hpa = yaml.safe_load((ROOT / "deploy/kubernetes/optional/hpa-queue-depth.yaml").read_text())
        hpa["apiVersion"] = "autoscaling/v2beta2"  # the 1.20 overlay's one change
        # This cluster has no metrics-server: a CPU metric that cannot be read blocks every
        # scale-down. And the default five-minute scale-down window is shortened to fit a test.
        hpa["spec"]["metrics"] = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
        hpa["spec"]["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_S}}
        # In place of the base HPA, as deploy/kubernetes/README.md says; a new object also has
        # its own event budget, which the base one spent on CPU metrics it cannot read.
        self.cluster.kubectl("delete", "hpa", "modelserve", "-n", NAMESPACE)
        self.apply([hpa])
        uid = self.cluster.get("hpa", "modelserve", "-n", NAMESPACE)["metadata"]["uid"]
        target = hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"]
        decisions: list[str] = []
        start = time.monotonic()

        def watch(until: Callable[[int, int], bool]) -> bool:
            current, desired, value = self.hpa_state()
            line = f"replicas {current} -> desired {desired} (queue depth per pod {value or '?'})"
            if not decisions or not decisions[-1].endswith(line):
                decisions.append(f"+{time.monotonic() - start:.0f} s: {line}")
            return until(current, desired)

        body = self.cluster.root / "rows.json"
        example, _ = example_and_truth()
        body.write_text(json.dumps({"instances": [example] * 20}))
        wrk = subprocess.Popen(
            netns_cmd(self.cluster.nodes[1].netns, "wrk", "-t2", "-c256", "-d600s", "-s",
                      str(ROOT / "bench/post.lua"), f"{self.service_url}/predict", "--", str(body)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_until("the HPA scaling up under load", lambda: watch(lambda c, d: d > 2), 240, 2)
        finally:
            wrk.terminate()
            wrk.wait(30)
        decisions.append(f"+{time.monotonic() - start:.0f} s: load stopped")
        wait_until("the HPA back at 2", lambda: watch(lambda c, d: c == d == 2), 300, 2)
        wait_until("two pods", lambda: self.ready_pods(2), 180, every=2)
        events = self.cluster.get(
            "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.uid={uid}"
        )["items"]
        said = [e["message"] for e in events if e.get("reason") == "SuccessfulRescale"]
        assert len(said) >= 2, said
        return [
            f"the optional HPA on {QUEUE_METRIC} (target {target} per pod) with the real HPA "
            f"controller; the custom metrics API stood in for by tests/helpers/custom_metrics_api "
            f"with the README's prometheus-adapter rule; scale-down window {SCALE_DOWN_S} s",
            *decisions,
            *(f"event: {message}" for message in said),
        ]


def diagnostics(cluster: Cluster) -> str:
    """What a failure needs for its reading: pods, events, the server containers' log tails."""
    parts = []
    for args in (
        ("get", "pods", "-A", "-o", "wide"),
        ("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp"),
        ("logs", "-n", NAMESPACE, "-l", SELECTOR, "--tail=20", "--prefix", "--all-containers"),
    ):
        try:
            parts.append(f"$ kubectl {' '.join(args)}\n{cluster.kubectl(*args)[-4000:]}")
        except (RuntimeError, subprocess.SubprocessError) as exc:
            parts.append(f"$ kubectl {' '.join(args)}: {exc}")
    for proc in cluster.procs.started:
        parts.append(f"--- {proc.name} (log tail)\n{proc.tail(8)}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    total = time.monotonic()

    def phase(name: str, step: Callable[[], object]) -> None:
        start = time.monotonic()
        print(f"k8s-test: {name} ...", flush=True)
        result = step()
        for line in result if isinstance(result, list) else [result]:
            print(f"k8s-test:   {line}", flush=True)
        print(f"k8s-test: {name} ok in {time.monotonic() - start:.0f} s", flush=True)

    engine = Engine()
    bin_dir: list[Path] = []
    try:
        if not Path("/etc/debian_version").exists() or shutil.which("apt-get") is None:
            raise NoClusterError(
                "not a Debian machine: the cluster is built from Debian 12 packages"
            )
        phase("packages", install_packages)
        phase("engine", engine.start)
        bin_dir.append(k8s_build.ensure())  # prints its own progress
    except (NoEngineError, NoClusterError) as exc:
        print(f"k8s-test SKIPPED: the cluster cannot start here: {exc}", flush=True)
        return 0
    cluster: Cluster | None = None
    try:
        phase("stand-in base images", build_stand_ins)
        phase("image", build_image)
        cluster = Cluster(bin_dir[0])
        try:
            phase("network namespaces", cluster.start_network)
            phase("a dockerd per node", cluster.start_engines)
        except NoClusterError as exc:
            print(f"k8s-test SKIPPED: the cluster cannot start here: {exc}", flush=True)
            return 0
        test = K8sTest(cluster)
        phase("control plane", cluster.start_control_plane)
        phase("two nodes", cluster.start_nodes)
        phase("the image in both nodes", test.images)
        phase("deploy the shipped manifests", test.deploy)
        phase("Prometheus finds the pods through the API server", test.start_prometheus)
        phase("200 requests through the Service", test.check_spread)
        phase(f"a pod deleted under c={CONCURRENCY}", test.check_pod_deleted)
        phase("the shared registry", test.shared_registry)
        phase("promote and rollback on the shared registry", test.check_promote)
        phase("every pod in Prometheus, the dashboard's queries", test.check_prometheus)
        phase("the HPA on queue depth, up and down", test.check_autoscaling)
        phase(f"rolling update under c={CONCURRENCY}", test.check_rollout)
    except (
        AssertionError,
        OSError,
        RuntimeError,
        subprocess.SubprocessError,
        httpx.HTTPError,
    ) as exc:
        if cluster is not None:
            print(diagnostics(cluster), flush=True)
        print(f"k8s-test FAILED: {type(exc).__name__}: {exc}", flush=True)
        return 1
    finally:
        if cluster is not None:
            phase("teardown", cluster.teardown)
        engine.stop()
    print(f"k8s-test passed in {time.monotonic() - total:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
