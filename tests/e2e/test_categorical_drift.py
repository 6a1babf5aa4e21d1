"""Categorical drift through the committed rules: real server, real simulator, real Prometheus.

Two copies of a mixed-type model (registered with ``modelserve register`` from the same
sample) get traffic from ``modelserve simulate`` drawn from that sample: one as it is, one with
``--shift plan=team:0.6`` (60 % of rows forced to plan "team", which the sample has at ~20 %).
The PSI recording rule, unchanged, must see the shift in ``plan`` only on the second copy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.mixed import register_churn, simulate
from tests.helpers.prometheus_proc import PrometheusServer
from tests.helpers.support import Server

MODEL, PROBE = "churn", "churn-probe"
PSI = "model_version_feature:modelserve_feature_psi:1h"
COUNTED = "model_version_feature:modelserve_feature_values:increase1h"
RATE, SECONDS = 250, 4

pytestmark = pytest.mark.e2e


def _all_counted(prom: PrometheusServer, model: str, rows: int) -> Callable[[], bool]:
    """Every string feature's recorded count includes all ``rows`` (missing values too)."""

    def probe() -> bool:
        counts = prom.values(f'{COUNTED}{{model="{model}"}}', "feature")
        return all(counts.get(f, 0) >= rows - 0.5 for f in ("plan", "country"))

    return probe


def test_a_shifted_category_moves_only_its_psi(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    registry = tmp_path / "models"
    sample = register_churn(registry, tmp_path, MODEL)
    register_churn(registry, tmp_path, PROBE)
    server = server_factory(
        registry,
        env={
            "MODELSERVE_MODEL": MODEL,
            "MODELSERVE_POLL_INTERVAL_S": "0",
            "MODELSERVE_PREDICTION_LOG": str(tmp_path / "predictions.db"),
        },
    )
    server.wait_ready(timeout=120)
    (tmp_path / "prom").mkdir()
    with PrometheusServer(tmp_path / "prom", [f"127.0.0.1:{server.port}"]) as prom:
        prom.wait_for(
            lambda: (
                {MODEL, PROBE}
                <= prom.values("count by (model) (modelserve_feature_bin_total)", "model").keys()
            ),
            timeout=60,
            what="first scrape of the drift counters",
        )
        sent = {
            MODEL: simulate(server.url, MODEL, sample, RATE, SECONDS, "--seed", "1"),
            PROBE: simulate(
                server.url, PROBE, sample, RATE, SECONDS, "--seed", "2", "--shift", "plan=team:0.6"
            ),
        }
        assert min(sent.values()) >= 400, sent  # enough rows for PSI to mean something
        for model, rows in sent.items():
            prom.wait_for(_all_counted(prom, model, rows), what=f"{model} traffic in the counts")
        prom.wait_for(
            lambda: (
                {"plan", "country"} <= prom.values(f'{PSI}{{model="{PROBE}"}}', "feature").keys()
            ),
            what="PSI of the string features",
        )
        in_dist = prom.values(f'{PSI}{{model="{MODEL}"}}', "feature")
        shifted = prom.values(f'{PSI}{{model="{PROBE}"}}', "feature")
    print(f"PSI in distribution {in_dist}\nPSI with plan shifted {shifted}")
    assert {"plan", "country", "seats", "monthly_fee"} <= in_dist.keys()
    assert max(in_dist.values()) < 0.05, in_dist
    assert shifted["plan"] > 0.2, shifted
    assert max(v for k, v in shifted.items() if k != "plan") < 0.05, shifted
