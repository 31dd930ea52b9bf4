"""The WSGI application: one request in, one JSON answer out, whatever goes wrong."""

from __future__ import annotations

import logging
import random
import time

import redis
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from src import router
from src.metrics.web import WebMetrics
from src.settings import Settings
from src.storage import StoreUnavailable, open_storage
from src.store import Store, connect
from src.web.access_log import log_answer, raw_target
from src.web.context import Context
from src.web.errors import ApiError, body_too_large
from src.web.request import request_class
from src.web.spools import SpoolDir
from src.web.waiting import HeldAnswers

log = logging.getLogger("photo_tasks")


class Application:
    def __init__(self, settings: Settings):
        store = Store(connect(settings.redis_url, fail_fast=True), settings.task_ttl, settings.lease)
        self.ctx = Context(settings, store, WebMetrics(store.redis), HeldAnswers(settings, store.redis),
                           open_storage(settings))
        self.spools = SpoolDir(settings.upload_dir)  # sweeps dead processes' spools first
        self.request_class = request_class(settings, self.spools.path)

    def __call__(self, environ, start_response):
        request = self.request_class(environ)
        request_id = new_request_id()
        started = time.perf_counter()
        try:
            response = stamp(self._respond(request, request_id), request_id)
        finally:
            request.close()
        log_answer(request_id, request.remote_addr or "-", request.method, raw_target(environ),
                   response.status_code, time.perf_counter() - started)
        self.ctx.metrics.count_request(request.method, response.status_code, time.perf_counter() - started)
        return response(environ, start_response)

    def _respond(self, request, request_id: str) -> Response:
        try:
            return router.dispatch(self.ctx, request)
        except ApiError as error:
            self.ctx.metrics.count_refusal(error.status, error.code)
            return error.response()
        except HTTPException as exc:  # werkzeug's own: 413 while reading, 400 on a broken body
            return _from_http_exception(exc, self.ctx.settings.max_upload_bytes).response()
        except StoreUnavailable as exc:
            log.warning("request %s: object store unavailable: %s", request_id, exc)
            return self._store_away("object store")
        except Exception as exc:
            if _unavailable(exc):
                log.warning("request %s: Redis unavailable: %s", request_id, exc)
                return self._store_away("task store")
            log.exception("request %s failed", request_id)
            return ApiError(500, "internal_error", f"internal error (request id {request_id})").response()

    def _store_away(self, what: str) -> Response:
        """503 for a store we depend on that is away (counted as a refusal, as any other)."""
        self.ctx.metrics.count_refusal(503, "unavailable")
        return ApiError(503, "unavailable", f"the {what} is unavailable; try again shortly",
                        headers={"Retry-After": "1"}).response()


# Redis is there but will not serve us now: gone or slow (ConnectionError, which includes
# AuthenticationError and BusyLoadingError; TimeoutError), a replica (ReadOnlyError), no
# permission (NoPermissionError), a photo's lock still held after 10 s (LockError: left by a
# request an outage cut short, it lasts its 30 s), or a refusal redis-py has no class for
# (DENIED in protected mode, MASTERDOWN, TRYAGAIN, NOAUTH).
_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, redis.exceptions.NoPermissionError,
                redis.exceptions.LockError)
_REFUSALS = ("READONLY", "DENIED", "MASTERDOWN", "TRYAGAIN", "NOAUTH", "WRONGPASS")


def _unavailable(exc: Exception) -> bool:
    """A Redis error that means "try again shortly" (503), not a bug here (500)."""
    return isinstance(exc, _UNAVAILABLE) or (isinstance(exc, redis.ResponseError) and str(exc).startswith(_REFUSALS))


def new_request_id() -> str:
    """16 hex digits, unique enough to find a request's log line; not a secret, so drawn
    without a system call."""
    return f"{random.getrandbits(64):016x}"


def stamp(response: Response, request_id: str) -> Response:
    """What every answer carries: its request id (also in the log line), and `nosniff`, so
    no browser takes a JSON error or an image for something else."""
    response.headers["X-Request-Id"] = request_id
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _from_http_exception(exc: HTTPException, max_upload_bytes: int) -> ApiError:
    """werkzeug's exception in our shape, its headers kept (416's `Content-Range`)."""
    if exc.code == 413:
        return body_too_large(max_upload_bytes)
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    return ApiError(exc.code or 400, exc.name.lower().replace(" ", "_"), exc.description or exc.name,
                    headers=headers)


def create_app(settings: Settings | None = None):
    """The WSGI app for `settings` (by default, read from the environment)."""
    settings = settings or Settings.from_env()
    app = Application(settings)
    if settings.trusted_proxies:
        return ProxyFix(app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies,
                        x_host=settings.trusted_proxies)
    return app
