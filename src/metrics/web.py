"""The metrics a web process shows at GET /metrics: the HTTP requests the service's web
processes answered, and, read from Redis when asked, the service's shared counts, queue
depths and workers alive. Nothing in them names a user, a task or a file.

Several web processes serve one port (WEB_PROCESSES), and a scrape lands on one of them, so
each process adds the requests it answers to the shared hash in Redis (`shared.py`), as the
workers add theirs: counted in memory as they are answered, written every FLUSH_INTERVAL
(and by the answering process just before a scrape reads the hash, and when it exits), so
that a request costs no Redis round trip of its own. A process killed outright loses at most
its last FLUSH_INTERVAL of counts; the totals never go down."""

from __future__ import annotations

import atexit
import logging
import threading
from collections import Counter as Tally

import redis
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import Histogram

from src.metrics import rq_state, shared
from src.metrics.events import SHARED

log = logging.getLogger(__name__)

# Anything else a client sends as a method is counted as "other", so clients cannot add series.
METHODS = ("GET", "HEAD", "POST", "DELETE", "PUT", "PATCH", "OPTIONS")
FLUSH_INTERVAL = 1.0  # seconds

HTTP_REQUESTS = shared.SharedMetric("photo_tasks_http_requests", "HTTP requests answered, by method and status.",
                                    ("method", "status"))
HTTP_LATENCY = shared.SharedMetric("photo_tasks_http_request_duration_seconds",
                                   "Time from a request's arrival to its answer, by method.", ("method",),
                                   tuple(bound for bound in Histogram.DEFAULT_BUCKETS if bound != float("inf")))
# Sharing the service fairly (docs/fair-sharing.md): requests turned away, by code.
REFUSED = shared.SharedMetric("photo_tasks_requests_refused", "Requests refused to share the service fairly "
                              "or because it is full, unavailable or out of disk, by error code.", ("code",))
REFUSAL_CODES = ("too_many_tasks", "rate_limited", "quota_exceeded", "overloaded", "insufficient_storage",
                 "unavailable")
WEB = (HTTP_REQUESTS, HTTP_LATENCY, REFUSED)


class PendingCounts:
    """Increments of the shared hash not yet written: what SharedMetric writes to a pipeline,
    added up here instead, and written in one pipeline by `flush`."""

    def __init__(self):
        self.lock = threading.Lock()  # held to count
        self.flushing = threading.Lock()  # held while written: a scrape's flush waits for one under way
        self.whole: Tally = Tally()
        self.fractions: Tally = Tally()

    def hincrby(self, key: str, field: str, amount: int) -> None:
        self.whole[field] += amount

    def hincrbyfloat(self, key: str, field: str, amount: float) -> None:
        self.fractions[field] += amount

    def flush(self, conn: redis.Redis) -> None:
        with self.flushing:
            self._flush(conn)

    def _flush(self, conn: redis.Redis) -> None:
        with self.lock:
            whole, fractions = self.whole, self.fractions
            self.whole, self.fractions = Tally(), Tally()
        if not whole and not fractions:
            return
        try:
            with conn.pipeline() as pipe:  # MULTI: all of it or none
                for field, amount in whole.items():
                    pipe.hincrby(shared.KEY, field, amount)
                for field, amount in fractions.items():
                    pipe.hincrbyfloat(shared.KEY, field, amount)
                pipe.execute()
        except redis.RedisError as exc:  # kept for the next flush
            with self.lock:
                self.whole.update(whole)
                self.fractions.update(fractions)
            log.debug("request counts not written yet: %s", exc)


class WebMetrics:
    def __init__(self, conn: redis.Redis, flush_interval: float = FLUSH_INTERVAL):
        self.conn = conn
        self.pending = PendingCounts()
        self.registry = CollectorRegistry()
        self.registry.register(ServiceCollector(conn, self.pending))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._stopped = threading.Event()
        threading.Thread(target=self._flush_every, args=(flush_interval,), name="metrics-flush", daemon=True).start()
        atexit.register(self.pending.flush, conn)

    def count_request(self, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        with self.pending.lock:
            HTTP_REQUESTS.add(self.pending, (method, str(status)))
            HTTP_LATENCY.observe(self.pending, (method,), seconds)

    def count_refusal(self, status: int, code: str) -> None:
        """Count a 429, 503 or 507 answer by its error code."""
        if status in (429, 503, 507) and code in REFUSAL_CODES:
            with self.pending.lock:
                REFUSED.add(self.pending, (code,))

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and its content type: Prometheus text, or OpenMetrics when asked for."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def close(self) -> None:
        """Write what is counted and stop writing: the app is done (a test's, say)."""
        self._stopped.set()
        self.pending.flush(self.conn)

    def _flush_every(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            self.pending.flush(self.conn)


class ServiceCollector:
    """Numbers of the whole service, read from Redis at each scrape (this process's own
    request counts written first)."""

    def __init__(self, conn: redis.Redis, pending: PendingCounts):
        self.conn, self.pending = conn, pending

    def collect(self):
        up = GaugeMetricFamily("photo_tasks_redis_up", "1 when Redis answered this scrape, else 0.")
        try:
            self.pending.flush(self.conn)
            raw = self.conn.hgetall(shared.KEY)
            depths = rq_state.queue_depths(self.conn)
            workers = len(rq_state.workers_alive(self.conn))
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from shared.families(raw, (*WEB, *SHARED))
        depth = GaugeMetricFamily("photo_tasks_queue_depth", "Runs waiting on each queue: RQ's jobs, and the tasks "
                                  "waiting their turn in the users' backlogs.", labels=("queue",))
        for queue, count in depths.items():
            depth.add_metric([queue], count)
        yield depth
        yield GaugeMetricFamily("photo_tasks_workers_alive", "RQ workers registered and not expired.",
                                value=workers)
