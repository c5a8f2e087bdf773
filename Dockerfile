# syntax=docker/dockerfile:1
# tessera-daemon: one image for `run` (default), `agent` and `detector`.
#   docker build -t tessera-daemon .
#   docker run --rm -p 127.0.0.1:9477:9477 tessera-daemon                 # all in one, simulated cluster
#   docker run --rm tessera-daemon agent --config /etc/tessera/tessera.toml
# Configuration: mount a TOML file at /etc/tessera/tessera.toml and pass --config, or set
# TESSERA_SECTION__KEY variables. The root filesystem may be read-only: the only writable paths are
# /var/lib/tessera (state), /var/cache/tessera (numba JIT cache) and /tmp.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# The venv lives at the same path in both stages, so its scripts' shebangs stay valid.
RUN python -m venv /opt/tessera

# setup.py copies alert_rules.yml, grafana/, deploy/ and examples/ into the wheel as package data
# (tessera-daemon assets export DIR writes them out of the image).
COPY pyproject.toml setup.py MANIFEST.in README.md alert_rules.yml ./
COPY grafana ./grafana
COPY deploy ./deploy
COPY examples ./examples
COPY tessera_daemon ./tessera_daemon

# The source revision that tessera_build_info reports: docker build --build-arg REVISION="$(git rev-parse HEAD)" .
ARG REVISION=unknown
RUN printf '%s\n' "${REVISION}" > tessera_daemon/REVISION

# Build a wheel of the project, then install it with its pinned-by-resolver dependencies into the venv.
RUN /opt/tessera/bin/pip install --no-cache-dir --upgrade "pip>=24" \
    && /opt/tessera/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/tessera/bin/pip install --no-cache-dir /wheels/tessera_daemon-*.whl \
    && /opt/tessera/bin/python -m compileall -q /opt/tessera/lib

# ---------------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="tessera-daemon" \
      org.opencontainers.image.description="Gray-failure detection daemon for GPU and accelerator clusters" \
      org.opencontainers.image.source="https://github.com/tessera-daemon/tessera-daemon" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 tessera \
    && useradd --system --uid 10001 --gid tessera --no-create-home \
       --home-dir /var/lib/tessera --shell /usr/sbin/nologin tessera \
    && mkdir -p /var/lib/tessera /var/cache/tessera/numba /etc/tessera \
    && chown -R tessera:tessera /var/lib/tessera /var/cache/tessera

COPY --from=build /opt/tessera /opt/tessera

ENV PATH=/opt/tessera/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/var/cache/tessera/numba \
    TESSERA_HTTP__HOST=0.0.0.0 \
    TESSERA_HTTP__PORT=9477 \
    TESSERA_DAEMON__STATE_DIR=/var/lib/tessera

USER 10001:10001
WORKDIR /var/lib/tessera

EXPOSE 9477

# GET /healthz and /readyz on the configured address; exit 0 when both answer 200. /readyz waits for the
# detector's warm-up (adaptive, 60-240 windows: 80 % of streams in about 7 minutes by default), which the
# start period covers; a failure after a first success counts at once.
HEALTHCHECK --interval=15s --timeout=5s --start-period=12m --retries=3 \
    CMD ["tessera-daemon", "check"]

# SIGTERM (the default stop signal) finishes the current window and exits 0 within a few seconds.
STOPSIGNAL SIGTERM

ENTRYPOINT ["tessera-daemon"]
CMD ["run"]
