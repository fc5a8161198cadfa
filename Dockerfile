# tokenpulse image: the `tokenpulse` CLI, running `tokenpulse worker` by default.
#
#   docker build -t tokenpulse .
#   docker run --rm -e TOKENPULSE_KAFKA_BOOTSTRAP=broker:9092 -p 127.0.0.1:6066:6066 tokenpulse
#   docker run --rm tokenpulse simulate --bootstrap broker:9092 --rate 50
#
# docker-compose.yml in this directory runs it with Apache Kafka; see the comments there.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- build stage
# Everything is installed into /opt/venv here and copied into a clean runtime stage,
# so compilers and build caches never reach the final image.
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# On amd64 every dependency ships a wheel. Elsewhere (arm64: Apple silicon, Graviton)
# faust-streaming 0.15 has no wheel and is built from its sdist; a C compiler gives it
# its Cython speedups (without one it silently installs a slower pure-Python build).
ARG TARGETARCH
RUN if [ "${TARGETARCH:-}" != "amd64" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/*; \
    fi

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
# Only [project].dependencies are installed; the [test] extra is not.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the project itself (a regular, non-editable install; .dockerignore keeps tests,
# virtualenvs, caches and .env out of the build context).
COPY . .
RUN pip install --no-deps . \
    && tokenpulse --help > /dev/null

# ---------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="tokenpulse" \
      org.opencontainers.image.description="Real-time governance of LLM token spend" \
      org.opencontainers.image.licenses="Apache-2.0"

# TOKENPULSE_WEB_HOST: the API must listen on all interfaces to be reachable through a
# published port (the application default, 127.0.0.1, is only right outside containers).
# TOKENPULSE_DATA_DIR: the worker's local state, in a directory the non-root user owns.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TOKENPULSE_WEB_HOST=0.0.0.0 \
    TOKENPULSE_WEB_PORT=6066 \
    TOKENPULSE_DATA_DIR=/var/lib/tokenpulse

RUN groupadd --system --gid 10001 tokenpulse \
    && useradd --system --uid 10001 --gid tokenpulse \
        --home-dir /var/lib/tokenpulse --no-create-home --shell /usr/sbin/nologin tokenpulse \
    && mkdir -p /var/lib/tokenpulse \
    && chown tokenpulse:tokenpulse /var/lib/tokenpulse

COPY --from=build /opt/venv /opt/venv

WORKDIR /var/lib/tokenpulse
USER tokenpulse:tokenpulse

EXPOSE 6066

# Liveness of the worker's API (slim has no curl). Uses the port the worker was given.
# Containers running another command (e.g. `simulate`) should disable it:
# `healthcheck: {disable: true}` in compose, `--no-healthcheck` with docker run.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TOKENPULSE_WEB_PORT', '6066'), timeout=4)"]

ENTRYPOINT ["tokenpulse"]
CMD ["worker"]
