"""The text log format writes every record as exactly one line, whatever a client sent; a
failure that repeats is logged at its start, at most once a minute, and at its end."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator

import pytest

from app.failure_log import RepeatedFailureLog
from app.logs import (
    JsonFormatter,
    TextFormatter,
    access_log,
    configure_logging,
    log_access,
    one_line,
    request_id_var,
)

LINE_BREAKING = {"Cc", "Zl", "Zp"}
EVERY_CONTROL = "".join(
    chr(c) for c in range(0x3000) if unicodedata.category(chr(c)) in LINE_BREAKING
)


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("modelserve.access", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def _format(record: logging.LogRecord) -> str:
    return TextFormatter().format(record)


def test_every_control_character_is_escaped_in_messages_and_extras() -> None:
    line = _format(_record("request " + EVERY_CONTROL, path="/models/x" + EVERY_CONTROL))
    assert not any(unicodedata.category(c) in LINE_BREAKING for c in line)
    assert len(line.splitlines()) == 1
    assert (
        "\\r" in line
        and "\\n" in line
        and "\\x00" in line
        and "\\x1b" in line
        and "\\u2028" in line
    )


def test_a_forged_line_stays_inside_the_real_one() -> None:
    forged = "x\r\n2026-01-01 00:00:00,000 INFO modelserve.access request status=200"
    line = _format(_record("request", path="/models/" + forged, status=404))
    assert line.splitlines() == [line]
    assert line.endswith("status=404")


def test_a_traceback_is_one_line_too() -> None:
    try:
        raise ValueError("bad\nname")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = _format(record)
    assert line.splitlines() == [line]
    assert "Traceback" in line and "ValueError: bad\\nname" in line


def test_printable_text_is_unchanged() -> None:
    text = "GET /models/breast-cancer café 半径 \\n"
    assert one_line(text) is text


def test_json_lines_quote_control_characters() -> None:
    line = JsonFormatter().format(_record("request", path="/x" + EVERY_CONTROL))
    assert "\n" not in line and "\r" not in line and "\x00" not in line


# ---- RepeatedFailureLog: a failure that repeats is a few lines, not one per occurrence -------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TickingClock(FakeClock):
    """Each reading is ``tick`` later than the one before, whichever thread reads it."""

    def __init__(self, tick: float) -> None:
        super().__init__()
        self.tick = tick

    def __call__(self) -> float:
        with self._lock:
            self.now += self.tick
            return self.now


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[tuple[str, str]]]:
    caplog.set_level(logging.INFO, logger=REPEATED)
    return lambda: [(r.levelname, r.getMessage()) for r in caplog.records if r.name == REPEATED]


REPEATED = "modelserve.test.repeated"


def _failures_log(
    clock: FakeClock, *, interval_s: float = 60.0, unit: str = "failures"
) -> RepeatedFailureLog:
    logger = logging.getLogger(REPEATED)
    return RepeatedFailureLog(logger, "writing rows", interval_s=interval_s, clock=clock, unit=unit)


def test_first_failure_logs_repeats_within_the_interval_do_not(
    lines: Callable[[], list[tuple[str, str]]],
) -> None:
    clock = FakeClock()
    failures = _failures_log(clock)
    failures.failed("disk full")
    assert failures.failing
    assert lines() == [
        (
            "ERROR",
            "writing rows: disk full (repeats are logged at most every 60 s until it recovers)",
        )
    ]
    for _ in range(100):
        clock.advance(0.5)  # 50 s of failures, one every half second
        failures.failed("disk full")
    assert len(lines()) == 1


def test_the_next_failure_after_the_interval_logs_with_the_count(
    lines: Callable[[], list[tuple[str, str]]],
) -> None:
    clock = FakeClock()
    failures = _failures_log(clock)
    failures.failed("disk full")
    for _ in range(119):  # 59.5 s
        clock.advance(0.5)
        failures.failed("disk full")
    clock.advance(0.5)  # 60 s after the first line
    failures.failed("disk still full")
    assert lines()[1:] == [
        ("ERROR", "writing rows: still failing, 120 more failures since the last line: "
                  "disk still full"),
    ]  # fmt: skip
    clock.advance(59)
    failures.failed("disk full", count=7)
    clock.advance(1)
    failures.failed("disk full", count=3)
    assert lines()[2:] == [
        ("ERROR", "writing rows: still failing, 10 more failures since the last line: disk full")
    ]


def test_success_logs_the_recovery_once_with_the_total(
    lines: Callable[[], list[tuple[str, str]]],
) -> None:
    clock = FakeClock()
    failures = _failures_log(clock, unit="rows")
    failures.failed("disk full", count=53)
    clock.advance(30)
    failures.failed("disk full", count=40)
    clock.advance(45)
    failures.failed("disk full", count=2)  # a line: 42 more rows
    clock.advance(5)
    failures.succeeded()
    failures.succeeded()
    clock.advance(1)
    failures.succeeded()
    assert not failures.failing
    assert lines() == [
        ("ERROR", "writing rows: disk full (53 rows; repeats are logged at most every 60 s until "
                  "it recovers)"),
        ("ERROR", "writing rows: still failing, 42 more rows since the last line: disk full"),
        ("WARNING", "writing rows: recovered after 95 rows in 80 s"),
    ]  # fmt: skip


def test_success_without_failure_logs_nothing(
    lines: Callable[[], list[tuple[str, str]]],
) -> None:
    failures = _failures_log(FakeClock())
    for _ in range(3):
        failures.succeeded()
    assert lines() == [] and not failures.failing


def test_a_new_failure_long_after_the_recovery_logs_its_start_at_once(
    lines: Callable[[], list[tuple[str, str]]],
) -> None:
    clock = FakeClock()
    failures = _failures_log(clock)
    failures.failed("disk full")
    clock.advance(1)
    failures.succeeded()
    clock.advance(3600)
    failures.failed("database locked")
    assert [message for _, message in lines()] == [
        "writing rows: disk full (repeats are logged at most every 60 s until it recovers)",
        "writing rows: recovered after 1 failures in 1 s",
        "writing rows: database locked (repeats are logged at most every 60 s until it recovers)",
    ]


def test_a_flapping_failure_is_two_lines_per_interval(
    lines: Callable[[], list[tuple[str, str]]],
) -> None:
    """Fail, succeed, fail, succeed... every flush: a start and a recovery per minute, and the
    failures in between counted by the next start line."""
    clock = FakeClock()
    failures = _failures_log(clock, unit="rows")
    for _ in range(400):  # 120 s: a failed flush of 2 rows, then a good one, every 0.3 s
        failures.failed("disk full", count=2)
        clock.advance(0.15)
        failures.succeeded()
        clock.advance(0.15)
    assert lines() == [
        ("ERROR", "writing rows: disk full (2 rows; repeats are logged at most every 60 s "
                  "until it recovers)"),
        ("WARNING", "writing rows: recovered after 2 rows in 0 s"),
        # the failed flushes from 0.3 s (silent: 0.15 s after the recovery) to 60.3 s
        ("ERROR", "writing rows: disk full (402 rows since the last line; repeats are logged "
                  "at most every 60 s until it recovers)"),
        ("WARNING", "writing rows: recovered after 402 rows in 0 s"),
    ]  # fmt: skip


def test_the_interval_and_the_extras_are_the_callers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=REPEATED)
    clock = FakeClock()
    failures = _failures_log(clock, interval_s=5)
    failures.failed("boom", model="m")
    clock.advance(5)
    failures.failed("boom", model="m")
    failures.succeeded(model="m")
    records = [r for r in caplog.records if r.name == REPEATED]
    assert [r.getMessage().split(":")[1].strip() for r in records] == [
        "boom (repeats are logged at most every 5 s until it recovers)",
        "still failing, 1 more failures since the last line",
        "recovered after 2 failures in 5 s",
    ]
    assert [r.__dict__["model"] for r in records] == ["m", "m", "m"]


def test_failures_from_many_threads_are_all_counted_and_lines_stay_in_order(
    lines: Callable[[], list[tuple[str, str]]],
) -> None:
    clock = TickingClock(0.001)  # 8,000 failures: 8 s, an interval of 1 s
    failures = _failures_log(clock, interval_s=1.0, unit="rows")
    barrier = threading.Barrier(8)

    def fail() -> None:
        barrier.wait()
        for _ in range(1000):
            failures.failed("disk full")

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failures.succeeded()
    logged = lines()
    assert logged[0][1].startswith("writing rows: disk full (repeats")
    assert logged[-1] == ("WARNING", "writing rows: recovered after 8000 rows in 8 s")
    still = [int(m.split(", ")[1].split()[0]) for _, m in logged[1:-1]]
    assert all("still failing" in m for _, m in logged[1:-1])
    assert 6 <= len(still) <= 8  # one a second, the clock read once per failure
    assert 1 + sum(still) <= 8000


def test_success_and_failure_racing_keep_the_lines_a_valid_sequence(
    lines: Callable[[], list[tuple[str, str]]],
) -> None:
    """Each line is written under the lock: a recovery never precedes its start, two starts
    never follow each other without a recovery between them."""
    clock = TickingClock(0.01)
    failures = _failures_log(clock, interval_s=0.05)
    barrier = threading.Barrier(4)

    def hammer(fail: bool) -> None:
        barrier.wait()
        for _ in range(2000):
            if fail:
                failures.failed("x")
            else:
                failures.succeeded()

    threads = [threading.Thread(target=hammer, args=(i % 2 == 0,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failures.succeeded()
    kinds = [
        "recovered" if "recovered" in m else "still" if "still failing" in m else "start"
        for _, m in lines()
    ]
    assert kinds and kinds[0] == "start" and kinds[-1] == "recovered"
    failing = False
    for kind in kinds:
        assert (kind == "start") != failing, kinds  # a start only when not failing, else not
        failing = kind != "recovered"


# ---- access lines: written without a log record, the same line; the loop's lines batched ------


class _Stream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def stream() -> Iterator[_Stream]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("text", "info")
    out = _Stream()
    root.handlers[0].setStream(out)  # type: ignore[attr-defined]
    yield out
    root.handlers[:], root.level = saved[0], saved[1]


SCOPE = {
    "method": "POST",
    "path": "/v1/models/x" + EVERY_CONTROL[:40] + ":predict",
    "state": {"model": "x", "version": "3", "instances": 2},
}


def _both_ways(log_format: str, stream: _Stream, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The same access line written directly and through ``logging`` (a filter on the access
    logger turns the direct path off), at the same instant."""
    logging.getLogger().handlers[0].setFormatter(
        JsonFormatter() if log_format == "json" else TextFormatter()
    )
    monkeypatch.setattr(time, "time", lambda: 1_796_615_711.379_581)
    monkeypatch.setattr(time, "perf_counter", lambda: 10.0)
    token = request_id_var.set("req-1")
    try:
        log_access(SCOPE, 200, 9.5)
        access_log.addFilter(lambda record: True)
        try:
            log_access(SCOPE, 200, 9.5)
        finally:
            access_log.filters.clear()
    finally:
        request_id_var.reset(token)
    return stream.getvalue().rstrip("\n").split("\n")  # "\x85" is a line end to splitlines()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_access_line_written_directly_is_the_logging_modules_line(
    log_format: str, stream: _Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct, logged = _both_ways(log_format, stream, monkeypatch)
    assert direct == logged
    assert "request_id=req-1" in direct or '"request_id":"req-1"' in direct
    assert "latency_ms=500.0" in direct or '"latency_ms":500.0' in direct
    if log_format == "text":
        second = time.localtime(1_796_615_711)
        assert direct.startswith(
            time.strftime("%Y-%m-%d %H:%M:%S,379 INFO modelserve.access", second)
        )
        assert direct.endswith("model=x version=3 instances=2") and "\\r" in direct


def test_a_traceback_still_goes_through_the_formatter() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = _record("failed", path="/x")
        record.exc_info = sys.exc_info()
    line = _format(record)
    assert "failed\\nTraceback" in line and line.endswith("request_id=- path=/x")


def test_the_loops_lines_leave_in_one_write_per_iteration_in_order(stream: _Stream) -> None:
    other = logging.getLogger("elsewhere")

    async def main() -> None:
        for i in range(5):
            log_access({**SCOPE, "path": f"/predict/{i}"}, 200, time.perf_counter())
        assert stream.writes == 0  # held until the iteration ends
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert stream.writes == 1
        log_access({**SCOPE, "path": "/predict/5"}, 200, time.perf_counter())
        # Another thread's line writes what the loop holds first, then itself.
        await asyncio.to_thread(other.warning, "from a thread")
        log_access({**SCOPE, "path": "/predict/6"}, 200, time.perf_counter())

    asyncio.run(main())
    logging.getLogger().handlers[0].flush()
    lines = stream.getvalue().splitlines()
    paths = [line.split(" path=")[1].split()[0] if " path=" in line else "thread" for line in lines]
    assert paths == [*(f"/predict/{i}" for i in range(6)), "thread", "/predict/6"]


def test_a_line_outside_any_loop_is_written_at_once(stream: _Stream) -> None:
    logging.getLogger("elsewhere").warning("now")
    assert stream.getvalue().endswith("now request_id=-\n")
