"""Reads the monitoring files: dashboard panels, rules, and the metric names they use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import Counter, Gauge, Histogram

from app import metrics
from tests.helpers.support import ROOT

DASHBOARD = ROOT / "grafana" / "dashboards" / "modelserve.json"
RULES_DIR = ROOT / "prometheus" / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"

# What prometheus-fastapi-instrumentator exports with the settings in app/main.py, plus the
# series Prometheus itself writes for every target.
INSTRUMENTATOR_METRICS = frozenset(
    {
        "http_requests_total",
        "http_requests_inprogress",
        *(
            f"{base}_{suffix}"
            for base in (
                "http_request_duration_seconds",
                "http_request_duration_highr_seconds",
                "http_request_size_bytes",
                "http_response_size_bytes",
            )
            for suffix in ("bucket", "count", "sum")
        ),
    }
)
PROMETHEUS_SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "bool", "inf", "nan"}
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?!\w)(\s*\()?")


def declared_metrics() -> set[str]:
    """Sample names of every metric in app/metrics.py, as they appear in the exposition."""
    names: set[str] = set()
    for obj in vars(metrics).values():
        if isinstance(obj, Counter):
            names.add(f"{obj._name}_total")
        elif isinstance(obj, Histogram):
            names.update(f"{obj._name}_{s}" for s in ("bucket", "count", "sum"))
        elif isinstance(obj, Gauge):
            names.add(obj._name)
    return names


def metric_names(expr: str) -> set[str]:
    """Metric (and recorded series) names an expression selects; functions and labels dropped."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    found: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS or name.startswith("$"):
            continue
        found.add(name)
    return found


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every non-row panel, including panels nested in collapsed rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        if panel["type"] == "row":
            yield from panel.get("panels", [])


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's variable expansion for the forms the dashboard uses ($x and ${x})."""
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr


def load_rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in RULE_FILES:
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def rules(kind: str) -> list[dict[str, Any]]:
    """All rules with a ``record`` or an ``alert`` key."""
    return [rule for group in load_rule_groups() for rule in group["rules"] if kind in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules("record")}


def runbook_anchors() -> set[str]:
    """GitHub-style anchors of the level-2 headings of docs/runbooks.md."""
    anchors = set()
    for line in RUNBOOKS.read_text().splitlines():
        if line.startswith("## "):
            anchors.add(re.sub(r"[^\w\- ]", "", line[3:].strip().lower()).replace(" ", "-"))
    return anchors


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
