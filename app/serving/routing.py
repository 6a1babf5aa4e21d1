"""Which version answers a request: production, or the canary for its share of routing keys.

The split hashes a routing key (``X-Routing-Key`` when the client sends one, else the request
id) into [0, 1) and sends the request to the canary when the point falls below the canary's
share. The hash is keyed by nothing process-local, so every worker and replica splits alike and
a client that sends a key stays on one version; raising the weight only moves keys from
production to the canary, never back.
"""

from __future__ import annotations

import hashlib
import os
from contextvars import ContextVar

from app.logs import request_id_var

ROUTING_KEY_HEADER = b"x-routing-key"

# Set per request by the API layer from the X-Routing-Key header ("" when absent).
routing_key_var: ContextVar[str] = ContextVar("routing_key", default="")


def current_key() -> str:
    """The request's routing key, else its request id, else a fresh random key."""
    key = routing_key_var.get() or request_id_var.get()
    if key and key != "-":
        return key
    return os.urandom(16).hex()


def point(key: str) -> float:
    """A stable, uniform point in [0, 1) for ``key`` (the same in every process)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def to_canary(key: str, share: float) -> bool:
    return share > 0 and point(key) < share
