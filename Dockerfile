# syntax=docker/dockerfile:1
# modelserve image: a locked venv built in one stage, copied into a slim non-root runtime.
# Works with a read-only root filesystem: only /tmp (tmpfs) and /app/data (volume) are written.

FROM python:3.11.14-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

# Dependencies first (their own layer, rebuilt only when the lock or the dependency list
# changes): the runtime dependencies from pyproject.toml and its `explain` extra (TreeSHAP for
# :explain), pinned by requirements.lock, which also pins the dev tools that must stay out of
# the image.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['explain']))" > runtime.txt \
    && pip install --no-cache-dir -c requirements.lock -r runtime.txt

COPY README.md ./
COPY app ./app
RUN pip install --no-cache-dir --no-deps . \
    && python -m compileall -q /opt/venv

FROM python:3.11.14-slim-bookworm AS runtime

ARG VERSION=0.1.0
# CI (docker/metadata-action) adds source, created and the real version on top of these.
ARG REVISION=unknown
LABEL org.opencontainers.image.title="modelserve" \
      org.opencontainers.image.description="Serve versioned scikit-learn models over HTTP, instrumented for Prometheus." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

RUN groupadd --system --gid 10001 modelserve \
    && useradd --system --uid 10001 --gid modelserve --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin modelserve

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# The baked default registry (read-only at run time); mount a volume on /app/models to serve
# your own. /app/data is owned by the service user so a fresh named volume inherits that.
COPY models /app/models
RUN mkdir -p /app/data && chown modelserve:modelserve /app/data

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODELSERVE_REGISTRY=/app/models \
    MODELSERVE_HOST=0.0.0.0 \
    MODELSERVE_PORT=8000 \
    MODELSERVE_GRPC_PORT=8081 \
    MODELSERVE_WORKERS=2 \
    MODELSERVE_LOG_FORMAT=json \
    MODELSERVE_PREDICTION_LOG=/app/data/predictions.db \
    PROMETHEUS_MULTIPROC_DIR=/tmp/metrics

USER 10001:10001
# 8000: HTTP (REST, /metrics, probes); 8081: OIP v2 gRPC (inference.GRPCInferenceService).
EXPOSE 8000 8081
VOLUME ["/app/data"]

# No curl in the image: the standard library asks /health/ready (503 or no answer -> exit 1).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:' + os.environ.get('MODELSERVE_PORT', '8000') + '/health/ready'; sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]

# Host, port and worker count come from the ENV above (MODELSERVE_*), so `docker run -e
# MODELSERVE_WORKERS=4` changes them; `modelserve serve` empties PROMETHEUS_MULTIPROC_DIR first.
CMD ["modelserve", "serve"]
