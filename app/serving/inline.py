"""Which model calls run on the event loop instead of the inference thread.

A compiled scorer's call (one-pass linear arithmetic or compiled trees, over a float64 matrix
or a compiled transform's) is a few numpy calls on small arrays: it holds the GIL from start
to end, so on the inference thread it runs no sooner and no faster than on the event loop,
and the hop costs more than the call. Going there and back takes a future, a thread wake-up,
two GIL hand-overs and a wake-up of the loop: about 30 µs of CPU a request against the bench
logistic model's 6 µs call, and while the loop waits for the GIL the sockets wait too.

Such a call runs on the loop when it is expected to take under ``MODELSERVE_INLINE_MAX_MS``
(5 ms, the interpreter's switch interval: about as long as a GIL-bound call in the thread can
hold the loop off anyway): the CPU seconds per row of this model's recent calls (wherever they
ran; waiting for the GIL is not counted; on the loop one call in eight is timed) times the rows
to score. A call's fixed cost makes this over-estimate bigger batches, so a batch too big to be
sure of goes to the thread. The first calls, and any other model (scikit-learn's own code,
which may release the GIL, run OpenMP threads or take arbitrarily long), go to the thread,
where the request timeout keeps applying.
"""

from __future__ import annotations

import math

# Weight of the latest call in the estimate: a few slow calls in a row move it, one does not.
RECENT_WEIGHT = 0.2
# Of the calls on the loop, one in this many is timed: reading a thread's CPU clock is a
# system call (no vDSO), two of them about half a one-row call's cost.
TIME_EVERY = 8


class InlineCalls:
    def __init__(self, max_s: float) -> None:
        self._max_s = max_s
        self._per_row_s = math.inf  # unknown until a call is timed
        self._untimed = 0

    def allows(self, rows: int) -> bool:
        """Whether a call scoring ``rows`` rows may run on the event loop."""
        return self._per_row_s * rows < self._max_s

    def times(self) -> bool:
        """Whether to time this call on the loop (one in ``TIME_EVERY``)."""
        self._untimed += 1
        if self._untimed < TIME_EVERY:
            return False
        self._untimed = 0
        return True

    def took(self, seconds: float, rows: int) -> None:
        """A call of this model (on the loop or in the thread) scored ``rows`` in ``seconds``."""
        per_row = seconds / max(rows, 1)
        if math.isinf(self._per_row_s):
            self._per_row_s = per_row
        else:
            self._per_row_s += RECENT_WEIGHT * (per_row - self._per_row_s)
