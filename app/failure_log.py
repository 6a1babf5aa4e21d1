"""A failure that may repeat for minutes, logged at its start, at most once per interval, and at
its end: a full disk must not also be filled with the news."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any


class RepeatedFailureLog:
    """One kind of failure that may repeat for minutes (a full disk, a database down, a version
    that cannot load), logged when it starts, then at most once per ``interval_s`` with how
    many happened since, and once when it ends: a full disk must not be filled with the news.

    Lines (``unit`` names what ``count`` counts: failures, rows):

    - the start, at once: ``<what>: <detail> (<n> <unit>; ...)`` (error);
    - while it lasts, on a failure at least ``interval_s`` after the last line:
      ``<what>: still failing, <n> more <unit> since the last line: <detail>`` (error);
    - the end, on the first success: ``<what>: recovered after <total> <unit> ...`` (warning).

    A failure that comes back within ``interval_s`` of the last line (it flaps: a write fails,
    the next succeeds, the next fails) is not a new start line: it is counted, and told by the
    first line due after the interval. So one kind of failure never writes more than two lines
    per interval (a start and a recovery), however it alternates.

    Metrics still count every failure; this only bounds the lines. Thread-safe: each line is
    written under the lock, so lines come out in the order of the states they report.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        unit: str = "failures",
    ) -> None:
        self._log = logger
        self._what = what
        self._interval_s = interval_s
        self._clock = clock
        self._unit = unit
        self._lock = threading.Lock()
        self._failing = False
        self._announced = False  # this run of failures has had its start line
        self._started = 0.0  # when the announced run began
        self._unlogged = 0  # failures not yet told by any line
        self._total = 0  # failures of the announced run, for its recovery line
        self._last_line: float | None = None

    @property
    def failing(self) -> bool:
        return self._failing

    def failed(self, detail: object, count: int = 1, **extra: Any) -> None:
        """``count`` more failures; ``detail`` (an exception, a message) says the latest."""
        with self._lock:
            now = self._clock()
            self._failing = True
            self._unlogged += count
            if self._announced:
                self._total += count
            if self._last_line is not None and now - self._last_line < self._interval_s:
                return
            n, self._unlogged, self._last_line = self._unlogged, 0, now
            if self._announced:
                message = (
                    f"{self._what}: still failing, {n} more {self._unit} since the last line: "
                    f"{detail}"
                )
            else:
                self._announced, self._started, self._total = True, now, n
                counted = f"{n} {self._unit}; " if n > 1 else ""
                if n > count:  # it began within the interval after the last line
                    counted = f"{n} {self._unit} since the last line; "
                message = (
                    f"{self._what}: {detail} ({counted}repeats are logged at most every "
                    f"{self._interval_s:g} s until it recovers)"
                )
            self._log.error(message, extra=extra)

    def succeeded(self, **extra: Any) -> None:
        """The operation worked: if it was failing, say once that it recovered."""
        if not self._failing:  # the common case, without the lock
            return
        with self._lock:
            if not self._failing:
                return
            self._failing = False
            if not self._announced:  # a relapse not told yet: the next line counts it
                return
            now = self._clock()
            total, lasted = self._total, now - self._started
            self._announced, self._total, self._unlogged, self._last_line = False, 0, 0, now
            self._log.warning(
                f"{self._what}: recovered after {total} {self._unit} in {lasted:.0f} s",
                extra=extra,
            )
