# alert-bridge: a slim image running `bridge run` as a non-root user, data on a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BRIDGE_HOST=0.0.0.0 \
    BRIDGE_PORT=9470 \
    BRIDGE_DATA_DIR=/data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY connectors ./connectors
COPY rules ./rules
COPY config ./config
RUN pip install . && rm -rf /src

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin bridge \
    && mkdir -p /data && chown bridge /data
USER bridge
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9470

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('BRIDGE_PORT', '9470')}/-/healthy\", timeout=2)"]

ENTRYPOINT ["bridge"]
CMD ["run"]
