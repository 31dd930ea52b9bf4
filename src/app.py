"""The WSGI application: one request in, one JSON answer out, whatever goes wrong."""

from __future__ import annotations

import logging
import time
import uuid

import redis
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from . import router
from .context import Context
from .errors import ApiError
from .metrics.web import WebMetrics
from .request import request_class
from .settings import Settings
from .spools import SpoolDir
from .store import Store, connect

log = logging.getLogger("photo_tasks")

# How waitress serves the app. Waitress would strip X-Forwarded-* headers itself; instead
# ProxyFix (in create_app) trusts exactly TRUSTED_PROXIES hops of them.
WAITRESS_OPTIONS = {"threads": 8, "ident": "photo-tasks", "clear_untrusted_proxy_headers": False}


class Application:
    def __init__(self, settings: Settings):
        store = Store(connect(settings.redis_url, fail_fast=True), settings.task_ttl, settings.lease)
        self.ctx = Context(settings, store, WebMetrics(store.redis))
        self.spools = SpoolDir(settings.upload_dir)  # sweeps dead processes' spools first
        self.request_class = request_class(settings, self.spools.path)

    def __call__(self, environ, start_response):
        request = self.request_class(environ)
        request_id = uuid.uuid4().hex[:16]
        started = time.perf_counter()
        try:
            response = self._respond(request, request_id)
        finally:
            request.close()
        response.headers["X-Request-Id"] = request_id
        log.info("%s %s %s %s -> %d in %.1f ms", request_id, request.remote_addr, request.method,
                 request.full_path.rstrip("?"), response.status_code, (time.perf_counter() - started) * 1000)
        self.ctx.metrics.count_request(request.method, response.status_code, time.perf_counter() - started)
        return response(environ, start_response)

    def _respond(self, request, request_id: str) -> Response:
        try:
            return router.dispatch(self.ctx, request)
        except ApiError as error:
            return error.response()
        except HTTPException as exc:  # werkzeug's own: 413 while reading, 400 on a broken body
            return _from_http_exception(exc).response()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            log.warning("request %s: Redis unavailable: %s", request_id, exc)
            return ApiError(503, "unavailable", "the task store is unavailable; try again shortly",
                            headers={"Retry-After": "1"}).response()
        except Exception:
            log.exception("request %s failed", request_id)
            return ApiError(500, "internal_error", f"internal error (request id {request_id})").response()


def _from_http_exception(exc: HTTPException) -> ApiError:
    if exc.code == 413:
        return ApiError(413, "too_large", "the request body is larger than MAX_UPLOAD_BYTES")
    return ApiError(exc.code or 400, "bad_request", exc.description or exc.name)


def create_app(settings: Settings | None = None):
    """The WSGI app for `settings` (by default, read from the environment)."""
    settings = settings or Settings.from_env()
    app = Application(settings)
    if settings.trusted_proxies:
        return ProxyFix(app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies,
                        x_host=settings.trusted_proxies)
    return app
