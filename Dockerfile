# Photo-task service image. One image serves both roles:
#   web:    python wsgi.py          (the default CMD; waitress on $PORT)
#   worker: python -m src.worker    (RQ worker on queues `score` and `resize`, with scheduler)
# Redis is not embedded here: set REDIS_URL (docker-compose.yml does).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so code edits do not invalidate this layer.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# Unprivileged user; it owns the upload directory (a named volume mounted at
# /app/uploads is initialised from this directory, ownership included).
RUN useradd --uid 10001 --user-group --no-create-home --no-log-init --shell /usr/sbin/nologin app \
    && mkdir -p /app/uploads \
    && chown app:app /app/uploads

# The application itself (everything else is excluded by .dockerignore / not copied).
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

# Healthy = the server answers HTTP at all. There is no health endpoint, so ask for a
# task: any HTTP answer (200/202/404, or 401 with API_KEYS, or 503 while Redis is away)
# raises HTTPError or succeeds and counts as healthy; only a connection failure is not.
# (Worker containers have no HTTP server: docker-compose.yml disables this check for them.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request, urllib.error\ntry:\n    urllib.request.urlopen('http://127.0.0.1:%s/?task_id=1' % os.environ.get('PORT', '8000'), timeout=4)\nexcept urllib.error.HTTPError:\n    pass\nexcept Exception:\n    sys.exit(1)"]

CMD ["python", "wsgi.py"]
