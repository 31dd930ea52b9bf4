"""The metrics one web app shows at GET /metrics: the HTTP requests it answered (counted in
this process), and, read from Redis when asked, the service's shared counts, queue depths and
workers alive. Nothing in them names a user, a task or a file."""

from __future__ import annotations

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from src.metrics import rq_state, shared
from src.metrics.events import SHARED

# Anything else a client sends as a method is counted as "other", so clients cannot add series.
METHODS = ("GET", "HEAD", "POST", "DELETE", "PUT", "PATCH", "OPTIONS")


REFUSAL_CODES = ("too_many_tasks", "rate_limited", "quota_exceeded", "overloaded", "insufficient_storage",
                 "unavailable")


class WebMetrics:
    def __init__(self, conn: redis.Redis):
        self.registry = CollectorRegistry()
        self.requests = Counter("photo_tasks_http_requests", "HTTP requests answered, by method and status.",
                                ("method", "status"), registry=self.registry)
        self.latency = Histogram("photo_tasks_http_request_duration_seconds",
                                 "Time from a request's arrival to its answer, by method.",
                                 ("method",), registry=self.registry)
        # Sharing the service fairly (docs/fair-sharing.md): requests turned away, by code.
        self.refused = Counter("photo_tasks_requests_refused", "Requests refused to share the service fairly "
                               "or because it is full, unavailable or out of disk, by error code.",
                               ("code",), registry=self.registry)
        for code in REFUSAL_CODES:
            self.refused.labels(code)
        self.registry.register(ServiceCollector(conn))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def count_request(self, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(method, str(status)).inc()
        self.latency.labels(method).observe(seconds)

    def count_refusal(self, status: int, code: str) -> None:
        """Count a 429, 503 or 507 answer by its error code."""
        if status in (429, 503, 507) and code in REFUSAL_CODES:
            self.refused.labels(code).inc()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and its content type: Prometheus text, or OpenMetrics when asked for."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class ServiceCollector:
    """Numbers of the whole service, read from Redis at each scrape."""

    def __init__(self, conn: redis.Redis):
        self.conn = conn

    def collect(self):
        up = GaugeMetricFamily("photo_tasks_redis_up", "1 when Redis answered this scrape, else 0.")
        try:
            raw = self.conn.hgetall(shared.KEY)
            depths = rq_state.queue_depths(self.conn)
            workers = len(rq_state.workers_alive(self.conn))
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from shared.families(raw, SHARED)
        depth = GaugeMetricFamily("photo_tasks_queue_depth", "Jobs waiting on each RQ queue.", labels=("queue",))
        for queue, count in depths.items():
            depth.add_metric([queue], count)
        yield depth
        yield GaugeMetricFamily("photo_tasks_workers_alive", "RQ workers registered and not expired.",
                                value=workers)
