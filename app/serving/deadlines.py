"""Request deadlines kept by one timer, not a timer per request.

``asyncio.timeout`` around each prediction makes a timer and cancels it almost at once: with
the event loop's bookkeeping, about a tenth of the CPU a one-row request costs at c=64. Every
prediction of a server has the same timeout, so deadlines come in the order requests do: they
wait in a queue, and one timer, every ``tick_s`` while any wait, fails the futures past theirs
with ``TimeoutError`` (at most ``tick_s`` late) and forgets those already resolved.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

TICK_S = 0.05
COMPACT_AT = 1024  # resolved futures held behind an unresolved one: dropped past this many


class Deadlines:
    def __init__(self, timeout_s: float, tick_s: float = TICK_S) -> None:
        self.timeout_s = timeout_s
        self._tick_s = min(tick_s, timeout_s)
        self._waiting: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._compact_at = COMPACT_AT

    def watch(self, future: asyncio.Future[Any]) -> None:
        """Fail ``future`` with ``TimeoutError`` if it is not done ``timeout_s`` from now."""
        loop = future.get_loop()
        if loop is not self._loop:  # one loop at a time: another one's futures are not ours
            self._timer = None  # a timer of the earlier loop's stops at its next tick
            self._waiting.clear()
            self._loop = loop
        self._waiting.append((loop.time() + self.timeout_s, future))
        if self._timer is None:
            self._timer = loop.call_later(self._tick_s, self._sweep, loop)

    def close(self) -> None:
        """Stop the timer (the loop is ending); what waits is left to its owner."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            return
        now = loop.time()
        waiting = self._waiting
        while waiting:
            deadline, future = waiting[0]
            if not future.done():
                if deadline > now:
                    break
                future.set_exception(TimeoutError())
            waiting.popleft()
        if len(waiting) > self._compact_at:
            # A slow request holds up the queue's head: the resolved ones behind it go now,
            # not when it ends (their results would stay in memory until then).
            self._waiting = deque(entry for entry in waiting if not entry[1].done())
            self._compact_at = max(COMPACT_AT, 2 * len(self._waiting))
        self._timer = loop.call_later(self._tick_s, self._sweep, loop) if self._waiting else None
