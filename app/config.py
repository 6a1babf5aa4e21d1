"""All runtime settings, read from ``MODELSERVE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the server. CLI flags override these; these override defaults."""

    model_config = SettingsConfigDict(
        env_prefix="MODELSERVE_", extra="ignore", populate_by_name=True
    )

    registry: Path = Field(Path("models"), description="Root of the model registry.")
    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to bind.")
    grpc_port: int = Field(
        8081,
        ge=0,
        le=65535,
        description="TCP port of the Open Inference Protocol gRPC service (inference."
        "GRPCInferenceService), on the same interface, in every worker; 0 turns gRPC off.",
    )
    workers: int = Field(1, ge=1, le=64, description="Server processes.")
    # The variable keeps its short name, MODELSERVE_MODEL; the field says what it is.
    default_model: str = Field(
        "breast-cancer",
        validation_alias="MODELSERVE_MODEL",
        description="Model served at POST /predict and POST /invocations.",
    )
    alias: str = Field("production", description="Alias of the default model to serve.")
    max_batch: int = Field(1000, ge=1, description="Most instances accepted in one request.")
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above)."
    )
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level: debug, info, warning, error."
    )

    batch_max_rows: int = Field(256, ge=1, description="Most rows coalesced into one model call.")
    batch_max_wait_ms: float = Field(
        2.0,
        ge=0,
        description="Longest a forming batch waits behind a running call; never when idle.",
    )
    queue_size: int = Field(
        1024, ge=1, description="Requests waiting per model before 503 + Retry-After."
    )
    model_threads: int = Field(
        1,
        ge=0,
        description="Threads one model call may use (OpenMP, BLAS); 0: the libraries' own "
        "default, every core. One leaves the cores to the event loop and the other workers.",
    )
    inline_max_ms: float = Field(
        5.0,
        ge=0,
        description="A compiled scorer's model call (compiled-trees, one-pass-linear) runs on "
        "the event loop, without the inference thread's hop, when its recent calls predict it "
        "takes under this many milliseconds of CPU; 0: every call in the inference thread.",
    )
    request_timeout_s: float = Field(
        10.0, gt=0, description="Longest a prediction may take before 504."
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="Longest a client may take to send request headers (408 after)."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="Longest a client may take to send a request body (408 after)."
    )
    shutdown_drain_s: float = Field(
        5.0,
        ge=0,
        description="On SIGTERM, how long the server keeps answering with /health/ready at 503 "
        "(so balancers take it out) before it stops accepting connections and finishes the "
        "requests in flight. SIGINT (Ctrl-C) and a second SIGTERM skip it.",
    )
    max_string_length: int = Field(
        4096,
        ge=1,
        description="Longest string value accepted for a feature, in characters (422 naming "
        "the feature above it, before it reaches the model).",
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve /metrics on this port instead of the main one (keeps it private).",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed by CORS, JSON list (e.g. ["https://app.example"]); '
        "empty: CORS off.",
    )

    poll_interval_s: float = Field(
        5.0, ge=0, description="How often servers re-read aliases (0 disables polling)."
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token for /admin routes; unset disables them."
    )
    version_cache_size: int = Field(
        4, ge=1, description="Pinned versions (/v2/.../versions/{v}) kept loaded, LRU."
    )
    shadow_queue_size: int = Field(
        1000,
        ge=1,
        description="Requests waiting to be scored by a shadow (or by production behind a "
        "canary); beyond it they are dropped and counted, never slowing the answers.",
    )

    # ---- :explain (app/serving/explain) ----
    explain_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest an :explain request may take (504 after), waiting in line and "
        "building the version's explainer included (the build goes on for the next request).",
    )
    explain_queue_size: int = Field(
        64,
        ge=1,
        description="Explain requests queued or running per worker; beyond it 503 + "
        "Retry-After. Explanations run in their own thread, never in the inference thread.",
    )
    explain_max_batch: int = Field(
        100, ge=1, description="Most instances one :explain request may carry (413 above)."
    )
    attribution_sample_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Share of answered rows explained after the answer, off the request path, "
        "into the attribution counters (modelserve_attribution_*): what drives each version in "
        "production. 0 turns it off.",
    )

    # ---- prediction log (app/monitoring) ----
    prediction_log_enabled: bool = Field(True, description="Log predictions; needed by feedback.")
    prediction_log: Path | None = Field(
        None, description="SQLite file of the prediction log (default: <registry>/../data/)."
    )
    database_url: str | None = Field(
        None,
        description="Prediction-log database URL (sqlite:///path or postgresql://user:pw@host/db,"
        " shared by replicas); overrides the path.",
    )
    prediction_log_retention_hours: float = Field(
        168.0, ge=0, description="Delete logged predictions older than this (0 keeps them)."
    )
    prediction_log_flush_ms: float = Field(
        150.0, gt=0, le=10_000, description="How often buffered predictions are committed."
    )
    prediction_log_buffer_rows: int = Field(
        20_000, ge=1, description="Most rows waiting to be written; more are dropped, counted."
    )
    prediction_log_buffer_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Most bytes of rows waiting to be written (an estimate of their inputs); "
        "more are dropped, counted.",
    )

    @property
    def prediction_log_path(self) -> Path:
        """The SQLite log file: the setting, or ``data/predictions.db`` beside the registry."""
        if self.prediction_log is not None:
            return self.prediction_log.expanduser().resolve()
        return self.registry.parent / "data" / "predictions.db"

    @property
    def prediction_log_where(self) -> str:
        """Where the log goes and which setting chose it, for the start-up log (no password)."""
        if self.database_url:
            url = urlsplit(self.database_url)
            if url.password:
                netloc = url.netloc.replace(f":{url.password}@", ":***@", 1)
                url = url._replace(netloc=netloc)
            return f"{urlunsplit(url)} (MODELSERVE_DATABASE_URL)"
        if self.prediction_log is not None:
            return f"{self.prediction_log_path} (MODELSERVE_PREDICTION_LOG)"
        # The registry may be named anywhere (/tmp/ms-models puts the log in /tmp/data): say so.
        return (
            f"{self.prediction_log_path} (the default beside the registry {self.registry}; "
            "set MODELSERVE_PREDICTION_LOG or MODELSERVE_DATABASE_URL to put it elsewhere)"
        )

    @field_validator("default_model", "alias")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("registry")
    @classmethod
    def _absolute_registry(cls, value: Path) -> Path:
        return value.expanduser().resolve()
