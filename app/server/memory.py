"""glibc's allocator tuned for a server whose requests come and go in megabytes.

glibc gives each thread that allocates while another holds the lock its own arena (up to
eight per core), and keeps what is freed in an arena for that arena's next allocations. A
worker's threads (the event loop, the model's inference thread, gRPC's completion-queue
threads, the prediction log's writer) each come to hold the freed megabytes of the requests
they handled. Two arenas keep that memory shared (``bench/big_strings.py``, one worker, 3,000
requests each carrying its own 1 MB string on every route: peak RSS +50 MB by default, +34 MB
with two). A fixed mmap threshold (``M_MMAP_THRESHOLD``) would return each big block at once
but mapped every megabyte anew: the same run took twice as long for about the same peak.

Set once per worker process, at app creation; an operator's own ``MALLOC_ARENA_MAX`` (or the
``glibc.malloc.arena_max`` tunable) is left as it is. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's malloc.h
ARENA_MAX = 2


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _operator_set_arenas() -> bool:
    return "MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", "")


def tune_malloc() -> bool:
    """Cap glibc's arenas at ``ARENA_MAX``; whether it was done (not glibc, or set already)."""
    if _operator_set_arenas():
        return False
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    done = bool(libc.mallopt(M_ARENA_MAX, ARENA_MAX))
    if not done:
        log.warning("mallopt(M_ARENA_MAX, %d) failed: memory freed by threads may stay", ARENA_MAX)
    return done
