"""Reading Prometheus exposition text in tests: sums and lookups over parsed samples."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> tuple[Sample, ...]:
    """Every sample of an exposition, parsed once however many totals a test reads from it
    (parsing an in-process app's /metrics takes a while once a worker has run many apps)."""
    return tuple(s for family in text_string_to_metric_families(text) for s in family.samples)


def samples(text: str, name: str) -> list[Sample]:
    """Every sample whose name is exactly ``name`` (e.g. ``modelserve_predictions_total``)."""
    return [s for s in _parsed(text) if s.name == name]


def total(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    want = dict(labels or {})
    return sum(
        s.value for s in samples(text, name) if all(s.labels.get(k) == v for k, v in want.items())
    )


def family_names(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def label_values(text: str) -> set[str]:
    """Every label value in the exposition, whatever the metric and label name."""
    return {
        value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for value in sample.labels.values()
    }


def wait_total(
    scrape: Callable[[], str], name: str, labels: Mapping[str, str], at_least: float,
    timeout_s: float = 120.0,
) -> float:  # fmt: skip
    """Scrape until ``total`` reaches ``at_least`` (or the timeout); the last total.

    The timeout is long because what is awaited is often an off-path scorer's work, and the
    scorer runs at idle priority: with other tests busy on every core it waits for the CPU.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = total(scrape(), name, labels)
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
