"""Production's latency with a shadow on and off (``make bench`` runs it after the main table).

The logistic model's production version answers one-row POSTs from wrk at c=16 on one server
process; a second logistic version (another C) is its shadow or not. The shadow is switched on
and off in that one running server, as ``modelserve shadow`` does (alias, then a reload), in
pairs whose order alternates (off-on, on-off, ...): the machine's slow drift and a fresh
server's first seconds then land on both sides alike. Before each run the server idles a
moment, so a shadow switched off has finished its queue. The report gives each run, the
median p99 of each side and the median of the pairs' ratios.
"""

from __future__ import annotations

import secrets
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from app.registry.roles import RoleAliases
from app.registry.store import Registry
from app.training.train import fitted_fields
from bench.models import LOGISTIC
from bench.servers import BenchServer, WrkResult, wrk

CONNECTIONS = 16
PAIRS = 6
SETTLE_S = 1.0  # idle after a switch: a shadow switched off drains its queue


@dataclass
class ShadowResult:
    off: list[WrkResult] = field(default_factory=list)
    on: list[WrkResult] = field(default_factory=list)
    dropped: list[float] = field(default_factory=list)
    scored: list[float] = field(default_factory=list)  # share of production's rows, per run

    def p99(self, side: list[WrkResult]) -> float:
        return statistics.median(r.p99_ms for r in side)

    def paired_change(self) -> float:
        """The median over pairs of on's p99 against its neighbour off's, in percent."""
        ratios = [on.p99_ms / off.p99_ms for off, on in zip(self.off, self.on, strict=True)]
        return (statistics.median(ratios) - 1) * 100 if ratios else 0.0

    def report(self) -> list[str]:
        off, on = self.p99(self.off), self.p99(self.on)
        change = (on / off - 1) * 100 if off else 0.0
        verdict = "within" if abs(change) <= 10 else "outside"
        return [
            f"Shadow (logistic production, a second logistic version as shadow, c={CONNECTIONS}, "
            f"one server process; the shadow switched in {PAIRS} off/on pairs of alternating "
            "order):",
            "",
            "| shadow | runs: req/s (p50 ms / p99 ms) | median p99 ms |",
            "|---|---|---|",
            f"| off | {'; '.join(_cell(r) for r in self.off)} | {off:.2f} |",
            f"| on | {'; '.join(_cell(r) for r in self.on)} | {on:.2f} |",
            "",
            f"p99 with the shadow on is {change:+.1f}% of off ({verdict} the 10% aim; "
            f"median of the pairs' ratios {self.paired_change():+.1f}%); "
            f"shadow jobs dropped per run: {', '.join(f'{d:.0f}' for d in self.dropped)}; "
            f"share of production's rows the shadow scored: "
            f"{', '.join(f'{100 * s:.0f}%' for s in self.scored)}.",
        ]


def _cell(r: WrkResult) -> str:
    return f"{r.rps:,.0f} ({r.p50_ms:.2f} / {r.p99_ms:.2f})"


def add_shadow_version(registry: Registry) -> str:
    data = load_breast_cancer()
    X, y = np.asarray(data.data, dtype=np.float64), np.asarray(data.target)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=1000)).fit(X, y)
    names = [str(n) for n in data.feature_names]
    return registry.register(
        LOGISTIC, model, fitted_fields(model, "classification", names, X, y, X[0])
    ).version


def _sum(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def shadow_check(work: Path, registry: Registry, body: Path, seconds: float) -> ShadowResult:
    import httpx

    version = add_shadow_version(registry)
    deployments = RoleAliases(registry)
    token = secrets.token_urlsafe(16)
    env = {"MODELSERVE_ADMIN_TOKEN": token}
    result = ShadowResult()
    with BenchServer.start("modelserve", work, registry.root, LOGISTIC, env=env) as srv:
        url = srv.url + "/predict"

        def switch(on: bool) -> None:
            deployments.set_shadow(LOGISTIC, version if on else None)
            auth = {"Authorization": f"Bearer {token}"}
            httpx.post(srv.url + "/admin/reload", headers=auth, timeout=60).raise_for_status()
            time.sleep(SETTLE_S)

        def counts() -> tuple[float, float, float]:
            text = httpx.get(srv.url + "/metrics", timeout=10).text
            return (
                _sum(text, f'modelserve_version_requests_total{{model="{LOGISTIC}"'),
                _sum(text, "modelserve_agreement_total{"),
                _sum(text, "modelserve_shadow_dropped_total{"),
            )

        switch(True)  # the scorer process started and both versions warm before any run
        wrk(url, body, CONNECTIONS, 3.0)
        for pair in range(PAIRS):
            for on in (False, True) if pair % 2 == 0 else (True, False):
                switch(on)
                before = counts()
                run = wrk(url, body, CONNECTIONS, seconds)
                (result.on if on else result.off).append(run)
                if on:
                    time.sleep(SETTLE_S)  # counted once the queue is done
                    after = counts()
                    answered, scored, dropped = (b - a for a, b in zip(before, after, strict=True))
                    result.dropped.append(dropped)
                    result.scored.append(scored / answered if answered else 0.0)
    deployments.set_shadow(LOGISTIC, None)
    return result
