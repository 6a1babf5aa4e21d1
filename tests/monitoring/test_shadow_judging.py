"""A label and a shadow's answer for the same row meet exactly once, whichever is stored first
(both backends): ``add_feedback`` returns the shadow answers already logged, ``write_shadow``
the labels already stored, each read in its own write transaction."""

from __future__ import annotations

import threading

from app.monitoring.records import FeedbackRow, ShadowRow
from tests.monitoring.conftest import BackendFactory


def _shadow(pid: str, version: str = "2") -> ShadowRow:
    return (pid, 1.0, "m", version, f'{{"prediction": "{pid}", "probabilities": null}}')


def _label(pid: str) -> FeedbackRow:
    return FeedbackRow(pid, 2.0, f'"label-{pid}"', "correct", None)


def test_each_side_reads_what_the_other_stored_first(make_backend: BackendFactory) -> None:
    backend = make_backend()
    assert backend.add_feedback([_label("a")]) == []  # no shadow answer yet
    # The shadow's answers arrive: the label stored before is handed back to judge.
    assert backend.write_shadow([_shadow("a"), _shadow("b")]) == [("a", '"label-a"')]
    # A row written again (a retried hop) is kept as it was and judged no second time.
    assert backend.write_shadow([_shadow("a"), _shadow("b")]) == []
    # A label after the shadow's answer gets that answer back, and only its own row's.
    found = backend.add_feedback([_label("b")])
    assert [(s.id, s.model, s.version, s.output) for s in found] == [
        ("b", "m", "2", _shadow("b")[4])
    ]
    # Another shadow version of the same row: judged on its own.
    assert backend.write_shadow([_shadow("b", version="3")]) == [("b", '"label-b"')]
    assert backend.write_shadow([]) == []


def test_racing_labels_and_shadow_answers_are_judged_exactly_once(
    make_backend: BackendFactory,
) -> None:
    """A label and the shadow's answer for the same row written at the same moment from two
    connections (two workers, or a worker and its scorer), row after row: every row is met by
    exactly one of the two sides, never by both, never by neither."""
    ids = [f"row-{i:04d}" for i in range(150)]
    labels, shadows = make_backend(), make_backend()
    together = threading.Barrier(2, timeout=30)
    met_by_label: list[str] = []
    met_by_shadow: list[str] = []
    errors: list[BaseException] = []

    def write_labels() -> None:
        try:
            for pid in ids:
                together.wait()
                met_by_label.extend(s.id for s in labels.add_feedback([_label(pid)]))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def write_shadows() -> None:
        try:
            for pid in ids:
                together.wait()
                met_by_shadow.extend(pid for pid, _ in shadows.write_shadow([_shadow(pid)]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write_labels), threading.Thread(target=write_shadows)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert sorted(met_by_label + met_by_shadow) == ids
