# syntax=docker/dockerfile:1
# exportd: one image, every role, chosen by the command:
#   docker run IMAGE              -> the API (exportd serve: gunicorn on :8080)
#   docker run IMAGE worker       -> the worker pool (exportd worker)
#   docker run IMAGE cleanup      -> delete what is past retention (a CronJob)
# Build with LibreOffice for Office conversions: --build-arg WITH_LIBREOFFICE=true
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
RUN python -m venv /opt/exportd
# Dependencies first, from the hash-pinned lock: this layer stays cached until the lock changes.
COPY requirements/runtime.lock requirements/runtime.lock
RUN /opt/exportd/bin/pip install --require-hashes -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY service service
COPY actors actors
COPY exporters exporters
COPY storage storage
COPY exportd exportd
RUN /opt/exportd/bin/pip install --no-deps . \
    && /opt/exportd/bin/python -m compileall -q /opt/exportd/lib

FROM ${BASE_IMAGE} AS runtime
ARG WITH_LIBREOFFICE=false
# tini reaps zombies and forwards signals, so SIGTERM reaches gunicorn and the worker supervisor.
# fonts-droid-fallback: a TrueType CJK font the PDF converters fall back to for Chinese and Japanese.
# Pango, HarfBuzz's subsetter and DejaVu: what WeasyPrint (HTML -> PDF) loads at run time.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini fonts-droid-fallback \
       libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && if [ "$WITH_LIBREOFFICE" = "true" ]; then \
         apt-get install -y --no-install-recommends \
           libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui fonts-dejavu-core; \
       fi \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 exportd \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin exportd \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=builder /opt/exportd /opt/exportd
ENV PATH=/opt/exportd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EXPORTD_HOST=0.0.0.0 \
    EXPORTD_DATA_DIR=/data
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "exportd"]
CMD ["serve"]
