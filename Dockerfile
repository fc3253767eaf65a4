# syntax=docker/dockerfile:1
# The appliance: one image for every role — `appliance serve` (default), `appliance notifier`,
# `appliance database …`. Build: `just image`. Lint: `just image-lint` (hadolint).

ARG PYTHON_VERSION=3.11

# --- build: wheels for the app and its dependencies (compilers live only here) -------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# A build stage never runs as a container.
HEALTHCHECK NONE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY appliance ./appliance
COPY api ./api
COPY db ./db
COPY notifier ./notifier
COPY ui ./ui
RUN pip wheel --wheel-dir /wheels .

# --- runtime: slim Python, no compilers, non-root, tini as PID 1 ---------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="appliance" \
      org.opencontainers.image.description="Self-hosted workflow orchestration server speaking the Prefect 3 REST API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/appliance"

# tini reaps children and forwards signals (gunicorn's SIGTERM shutdown) as PID 1.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.* \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels "appliance==${VERSION}" \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 appliance \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home appliance \
    && mkdir -p /data \
    && chown 10001:10001 /data

# Writable state only under /data (the SQLite default, the key file, heartbeats) and /tmp,
# so the root filesystem can be mounted read-only.
ENV APPLIANCE_HOME=/data \
    APPLIANCE_HOST=0.0.0.0 \
    APPLIANCE_PORT=4200 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 4200

# The start period covers waiting for the database and running migrations.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health' % os.environ.get('APPLIANCE_PORT', '4200'), timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--", "appliance"]
CMD ["serve"]
