"""GET /healthz and GET /readyz: for load balancers, orchestrators and operators; no API key.

/healthz says the web process runs, and asks nothing of Redis, so a Redis outage never gets
the web process restarted. /readyz says whether tasks can be done now: Redis answers, the
storage answers (`storage`: the object store's bucket, with STORAGE_URL) and at least one
worker is alive.
"""

from __future__ import annotations

import time

import redis
from werkzeug.wrappers import Request, Response

from src.metrics import rq_state
from src.storage import StoreUnavailable
from src.web.context import Context
from src.web.errors import json_response

NO_STORE = {"Cache-Control": "no-store"}


def live(ctx: Context, request: Request) -> Response:
    return json_response({"status": "ok"}, 200, NO_STORE)


def ready(ctx: Context, request: Request) -> Response:
    conn = ctx.store.redis
    try:
        started = time.perf_counter()
        conn.ping()
        ping_ms = (time.perf_counter() - started) * 1000
        workers = rq_state.workers_alive(conn)
        depths = rq_state.queue_depths(conn)
    except redis.RedisError as exc:
        body = {"status": "unavailable", "reason": "Redis does not answer",
                "redis": {"status": "unreachable", "error": type(exc).__name__}, "workers": None, "queues": None}
        return json_response(body, 503, {**NO_STORE, "Retry-After": "5"})
    body = {"status": "ready", "redis": {"status": "ok", "ping_ms": round(ping_ms, 2)},
            "workers": {"alive": len(workers), "names": workers}, "queues": depths}
    try:
        body["storage"] = ctx.storage.check()
    except StoreUnavailable as exc:
        body.update(status="unavailable", reason="the object store does not answer",
                    storage={"kind": ctx.storage.kind, "status": "unreachable", "error": str(exc)})
        return json_response(body, 503, {**NO_STORE, "Retry-After": "5"})
    if not workers:
        body.update(status="unavailable", reason="no worker is alive")
        return json_response(body, 503, {**NO_STORE, "Retry-After": "5"})
    return json_response(body, 200, NO_STORE)
