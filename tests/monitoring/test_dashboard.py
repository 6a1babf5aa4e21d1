"""Structure of the Grafana dashboard, provisioning, Prometheus config and rules (no servers)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from app.tools.rollout import QUERIES as ROLLOUT_QUERIES
from tests.helpers.queries import (
    INSTRUMENTATOR_METRICS,
    PROMETHEUS_SYNTHETIC,
    all_panels,
    declared_metrics,
    load_dashboard,
    metric_names,
    panels,
    read_yaml,
    recorded_names,
    rules,
    runbook_anchors,
)
from tests.helpers.support import ROOT

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
REQUIRED_ALERTS = {
    "ModelserveDown",
    "ModelserveHighErrorRate",
    "ModelserveHighLatencyP95",
    "ModelserveAccuracyBelowThreshold",
    "ModelserveFeatureDrift",
    "ModelserveModelReloadFailed",
    "ModelserveSaturated",
    "ModelserveCanaryWorse",
    "ModelserveShadowDisagreement",
    "ModelserveAttributionShift",
}
REQUIRED_ROWS = {
    "Traffic",
    "Latency",
    "Model",
    "Quality",
    "Drift",
    "Errors",
    "Versions side by side",
    "Workers",
}
RUNBOOK_BASE = "https://github.com/modelserve/modelserve/blob/main/docs/runbooks.md#"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def test_uid_title_and_variables(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "modelserve"
    assert dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) >= {"datasource", "model", "version"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    provisioned = read_yaml(ROOT / "grafana/provisioning/datasources/datasource.yml")
    uids = {ds["uid"] for ds in provisioned["datasources"]}
    assert uids == {"prometheus"}
    assert variables["datasource"]["current"]["value"] == "prometheus"
    for name in ("model", "version"):
        assert variables[name]["datasource"] == DATASOURCE_REF
        assert "modelserve_model_info" in variables[name]["query"]["query"]
    assert "$model" in variables["version"]["query"]["query"]


def test_panel_ids_unique_and_rows_complete(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in all_panels(dashboard)]
    assert len(ids) == len(set(ids)), Counter(ids).most_common(3)
    rows = {p["title"] for p in dashboard["panels"] if p["type"] == "row"}
    assert rows >= REQUIRED_ROWS
    for panel in all_panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]


def test_every_panel_has_title_description_unit_and_datasource(dashboard: dict[str, Any]) -> None:
    seen = list(panels(dashboard))
    assert len(seen) >= 15
    for panel in seen:
        title = panel.get("title", "")
        assert title.strip(), panel["id"]
        assert len(panel.get("description", "")) > 20, title
        assert panel["fieldConfig"]["defaults"].get("unit"), title
        assert panel["datasource"] == DATASOURCE_REF, title
        assert panel["targets"], title
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, title
            assert target["expr"].strip(), title


def test_quality_panel_draws_the_alert_threshold(dashboard: dict[str, Any]) -> None:
    (accuracy,) = [p for p in panels(dashboard) if p["title"].startswith("Accuracy")]
    defaults = accuracy["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert 0.85 in [step["value"] for step in defaults["thresholds"]["steps"]]
    assert "0.85" in next(
        r["expr"] for r in rules("alert") if r["alert"].startswith("ModelserveAcc")
    )


def test_every_metric_name_exists() -> None:
    """Dashboard and rules only read metrics the app exports or the rules record."""
    known = declared_metrics() | INSTRUMENTATOR_METRICS | PROMETHEUS_SYNTHETIC
    recorded = recorded_names()
    exprs = [t["expr"] for p in panels(load_dashboard()) for t in p["targets"]]
    exprs += [r["expr"] for r in rules("record") + rules("alert")]
    # `modelserve rollout` judges canaries through recorded series only.
    rollout = {n for q in ROLLOUT_QUERIES.values() for n in metric_names(q.format(sel=""))}
    assert rollout and rollout <= recorded, sorted(rollout - recorded)
    used: set[str] = set(rollout)
    for expr in exprs:
        used |= metric_names(expr)
    assert used, "no metric names parsed"
    assert {"modelserve_feedback_total", "modelserve_feature_bin_total", "up"} <= used
    unknown = {n for n in used if n not in known and n not in recorded}
    assert not unknown, f"not exported by app/metrics.py nor recorded: {sorted(unknown)}"
    # Every recorded series is used by an alert, the dashboard, another rule or the rollout.
    assert recorded <= used


def test_alerts_have_severity_annotations_and_runbooks() -> None:
    alerts = {r["alert"]: r for r in rules("alert")}
    assert set(alerts) >= REQUIRED_ALERTS
    anchors = runbook_anchors()
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        assert notes["runbook_url"] == RUNBOOK_BASE + name.lower(), name
        assert name.lower() in anchors, f"docs/runbooks.md has no section {name}"


def test_every_alert_has_a_promtool_case_that_fires_and_one_that_does_not() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in sorted((ROOT / "prometheus/tests").glob("*.yml")):
        for case in read_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check["exp_alerts"] else silent).add(check["alertname"])
    alerts = {r["alert"] for r in rules("alert")}
    assert alerts <= fires, alerts - fires
    assert alerts <= silent, alerts - silent


def test_prometheus_and_grafana_provisioning_contracts() -> None:
    prom = read_yaml(ROOT / "prometheus/prometheus.yml")
    assert prom["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert set(jobs) == {"modelserve", "haproxy", "prometheus", "alertmanager"}
    (dns,) = jobs["modelserve"]["dns_sd_configs"]
    assert dns == {**dns, "names": ["modelserve"], "type": "A", "port": 8000}
    assert jobs["alertmanager"]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    # The balancer's exporter port is the one its config serves /metrics on.
    haproxy_cfg = (ROOT / "deploy/haproxy/haproxy.cfg").read_text()
    (balancer,) = jobs["haproxy"]["static_configs"][0]["targets"]
    assert f"bind :{balancer.split(':')[1]}\n" in haproxy_cfg
    assert "use-service prometheus-exporter if { path /metrics }" in haproxy_cfg
    targets = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    provider = read_yaml(ROOT / "grafana/provisioning/dashboards/dashboards.yml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    (datasource,) = read_yaml(ROOT / "grafana/provisioning/datasources/datasource.yml")[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["type"] == "prometheus"
