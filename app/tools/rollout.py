"""``modelserve rollout``: step a canary's weight up, with Prometheus as the judge.

At every step the canary's weight is written to the registry (servers pick it up at their next
poll), then, for the step's interval, Prometheus's HTTP API is asked for the canary against
production through the recording rules in ``prometheus/rules/versions.yml``: error ratio,
p99 model latency ratio, online accuracy delta once both have enough labels, and agreement with
production. A failing check rolls back at once (the canary alias is removed with the reason
``rollout-failed: <check>``); a step whose checks all hold at the end of its interval advances;
the step at 100 % promotes the canary. Every decision is printed with its numbers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from app.registry.roles import RoleAliases

Echo = Callable[[str], None]
Sleep = Callable[[float], None]

# PromQL over the recording rules; {sel} is the model/version selector.
QUERIES = {
    "requests": "model_version:modelserve_version_requests:increase5m{sel}",
    "error-ratio": "model_version:modelserve_version_errors:ratio_rate5m{sel}",
    "p99": "model_version:modelserve_inference_duration_seconds:p99_rate5m{sel}",
    "accuracy": "model_version:modelserve_accuracy:ratio1h{sel}",
    "labels": "model_version:modelserve_feedback:increase1h{sel}",
    "agreement": "model_version:modelserve_agreement:ratio_rate5m{sel}",
}


@dataclass(frozen=True)
class Limits:
    max_error_ratio: float = 0.01
    max_p99_ratio: float = 1.5
    min_accuracy_delta: float = -0.02
    min_agreement: float | None = None
    min_labels: int = 50
    min_requests: int = 100
    # A p99 of about a millisecond moves by more than 1.5x on a busy host: below this absolute
    # difference a slower canary is noise, not a regression.
    latency_slack_s: float = 0.005


@dataclass(frozen=True)
class Plan:
    model: str
    version: str
    steps: tuple[float, ...]
    interval_s: float
    limits: Limits
    check_every_s: float = 15.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: not judged yet (too little data)
    detail: str

    def line(self) -> str:
        verdict = {True: "ok", False: "FAIL", None: "waiting"}[self.ok]
        return f"  {self.name}: {self.detail} -> {verdict}"


class RolloutError(Exception):
    """Prometheus could not be asked (unreachable, or a query it refuses)."""


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``5m``, ``1h`` -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h)")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def parse_steps(text: str) -> tuple[float, ...]:
    try:
        steps = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--steps {text!r}: give percentages like 5,25,50,100") from None
    if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise ValueError(f"--steps {text!r}: increasing percentages in (0, 100]")
    return steps


def selector(model: str, version: str) -> str:
    def quoted(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"')

    return f'{{model="{quoted(model)}",version="{quoted(version)}"}}'


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def value(self, query: str) -> float | None:
        """The single value of an instant query; None when it has no series."""
        try:
            resp = httpx.get(
                f"{self.url}/api/v1/query", params={"query": query}, timeout=self.timeout_s
            )
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RolloutError(f"cannot query Prometheus at {self.url}: {exc}") from None
        if resp.status_code != 200 or body.get("status") != "success":
            raise RolloutError(f"Prometheus refused {query!r}: {body.get('error', resp.text)}")
        result = body["data"]["result"]
        return float(result[0]["value"][1]) if result else None


def queries(model: str, version: str) -> dict[str, str]:
    sel = selector(model, version)
    return {name: q.format(sel=sel) for name, q in QUERIES.items()}


def evaluate(prom: Prometheus, plan: Plan, production: str) -> list[Check]:
    """Every check of the canary against production, from Prometheus now."""
    canary_q, prod_q = queries(plan.model, plan.version), queries(plan.model, production)
    limits = plan.limits
    requests = prom.value(canary_q["requests"]) or 0.0
    checks = []
    errors = prom.value(canary_q["error-ratio"])
    if errors is None or requests < limits.min_requests:
        checks.append(Check("error-ratio", None, f"{requests:.0f} canary requests so far"))
    else:
        checks.append(
            Check(
                "error-ratio",
                errors <= limits.max_error_ratio,
                f"{errors:.4f} of {requests:.0f} requests (max {limits.max_error_ratio})",
            )
        )
    if requests < limits.min_requests:  # a p99 of a handful of calls is their slowest one
        checks.append(Check("latency", None, f"{requests:.0f} canary requests so far"))
    else:
        checks.append(_ratio_check(prom, canary_q, prod_q, limits))
    checks.append(_accuracy_check(prom, canary_q, prod_q, limits))
    if limits.min_agreement is not None:
        agreement = prom.value(canary_q["agreement"])
        if agreement is None:
            checks.append(Check("agreement", None, "no rows compared yet"))
        else:
            ok = agreement >= limits.min_agreement
            checks.append(Check("agreement", ok, f"{agreement:.4f} (min {limits.min_agreement})"))
    return checks


def _ratio_check(
    prom: Prometheus, canary_q: dict[str, str], prod_q: dict[str, str], limits: Limits
) -> Check:
    canary, prod = prom.value(canary_q["p99"]), prom.value(prod_q["p99"])
    if canary is None or prod is None or prod <= 0:
        return Check("latency", None, "no p99 for both versions yet")
    ratio = canary / prod
    detail = f"p99 {canary * 1000:.3f} ms vs {prod * 1000:.3f} ms = {ratio:.2f}x"
    ok = ratio <= limits.max_p99_ratio or canary - prod < limits.latency_slack_s
    slack = f"{limits.latency_slack_s * 1000:g} ms"
    return Check("latency", ok, f"{detail} (max {limits.max_p99_ratio}x unless under +{slack})")


def _accuracy_check(
    prom: Prometheus, canary_q: dict[str, str], prod_q: dict[str, str], limits: Limits
) -> Check:
    labels = (prom.value(canary_q["labels"]) or 0.0, prom.value(prod_q["labels"]) or 0.0)
    canary, prod = prom.value(canary_q["accuracy"]), prom.value(prod_q["accuracy"])
    if canary is None or prod is None or min(labels) < limits.min_labels:
        return Check(
            "accuracy", None, f"labels {labels[0]:.0f} / {labels[1]:.0f} (need {limits.min_labels})"
        )
    delta = canary - prod
    detail = f"{canary:.4f} vs {prod:.4f} = {delta:+.4f} (min {limits.min_accuracy_delta:+})"
    return Check("accuracy", delta >= limits.min_accuracy_delta, detail)


def run(
    plan: Plan,
    roles: RoleAliases,
    prom: Prometheus,
    echo: Echo = print,
    sleep: Sleep = time.sleep,
) -> int:
    """Step the canary through ``plan``; 0 when it reaches its last step, 1 on rollback."""
    production = roles.read(plan.model).production
    if production is None:
        raise RolloutError(f"model {plan.model!r} has no production version")
    echo(f"rollout {plan.model} {plan.version} against production {production}")
    for step in plan.steps:
        if step >= 100:
            roles.promote(plan.model, plan.version, reason="rollout")
            echo(f"step 100%: promoted {plan.version} to production (was {production})")
            return 0
        roles.start_canary(plan.model, plan.version, step, reason=f"rollout {step:g}%")
        echo(f"step {step:g}%: canary {plan.version} for {plan.interval_s:g} s")
        failed = _watch(plan, prom, production, echo, sleep)
        if failed is not None:
            reason = f"rollout-failed: {failed.name}"
            roles.end_canary(plan.model, reason=reason)
            echo(f"rolled back: {reason} ({failed.detail}); production stays {production}")
            return 1
        echo(f"step {step:g}%: every check holds, advancing")
    echo(f"canary {plan.version} left at {plan.steps[-1]:g}% (no 100% step)")
    return 0


def _watch(plan: Plan, prom: Prometheus, production: str, echo: Echo, sleep: Sleep) -> Check | None:
    """Evaluate during one step; the first failing check, or None once the interval is over."""
    deadline = time.monotonic() + plan.interval_s
    while True:
        remaining = deadline - time.monotonic()
        sleep(max(0.0, min(plan.check_every_s, remaining)))
        checks = evaluate(prom, plan, production)
        final = time.monotonic() >= deadline
        for check in checks:
            if check.ok is False or final:
                echo(check.line())
        failed = next((c for c in checks if c.ok is False), None)
        if failed is not None:
            return failed
        if final:
            starved = next((c for c in checks if c.name == "error-ratio" and c.ok is None), None)
            if starved is not None:  # never advance a version no request has judged
                return Check("no-traffic", False, starved.detail)
            return None
