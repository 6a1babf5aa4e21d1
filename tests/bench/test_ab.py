"""bench/ab.py reads its variants as written on the command line and summarizes by medians."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.ab import Variant, _median
from bench.servers import WrkResult


def test_variant_with_settings_and_checkout() -> None:
    v = Variant.parse("nolog:MODELSERVE_PREDICTION_LOG_ENABLED=false,A=b=c@/tmp/wt")
    settings = {"MODELSERVE_PREDICTION_LOG_ENABLED": "false", "A": "b=c"}
    assert v == Variant("nolog", settings, Path("/tmp/wt"))


def test_bare_name_is_todays_code_with_default_settings() -> None:
    assert Variant.parse("today") == Variant("today", {}, None)


@pytest.mark.parametrize("spec", ["", ":A=1", "x:NOVALUE", "x:A=1,B"])
def test_malformed_variant_is_refused(spec: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        Variant.parse(spec)


def test_summary_is_each_figure_median() -> None:
    runs = [
        WrkResult(8000, 2.0, 0, 0, 9.0, 20.0, 100.0, 12.0),
        WrkResult(12000, 2.0, 0, 1, 10.0, 15.0, 90.0, 11.0),
        WrkResult(10000, 2.0, 0, 0, 11.0, 30.0, 80.0, 13.0),
    ]
    summary = _median(runs)
    assert summary.rps == 5000
    assert (summary.p50_ms, summary.p90_ms, summary.p99_ms, summary.max_ms) == (10, 12, 20, 90)
    assert summary.non_2xx == 1
