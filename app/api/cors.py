"""CORS: off unless origins are configured."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware


def install_cors(app: FastAPI, origins: list[str]) -> None:
    """CORS headers only for the configured origins; with none, browsers get no CORS grant."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        # Not Authorization: admin is not CORS. X-Routing-Key keeps a browser on one version.
        allow_headers=["Content-Type", "X-Request-ID", "X-Routing-Key"],
        expose_headers=["X-Request-ID", "X-Model-Version"],
    )
