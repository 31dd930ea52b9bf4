"""`python -m src.runners.deliverer`: delivers callbacks, apart from the work.

A process of its own (supervised by `make run`, a service of its own in docker-compose.yml),
so scoring and resizing never wait for a receiver, and a receiver never waits for them. It
takes the deliveries that are due from Redis (src/callbacks/deliveries.py), with a lease of
2 × WEBHOOK_TIMEOUT + 1 s, and runs each attempt on a pool of THREADS threads with pooled
connections (src/callbacks/client.py); each attempt is bounded by WEBHOOK_TIMEOUT. A receiver
that holds every call for WEBHOOK_TIMEOUT holds only its own share: at most PER_RECEIVER
attempts to one receiver (host and port) are in flight at once. Its other due deliveries
wait in this process (up to QUEUED_PER_RECEIVER of them, each started as soon as one of its
calls ends, its lease renewed first) or, past that, back in Redis for a while (`deferral`,
no attempt counted), while other receivers' go ahead.

A task's end wakes it at once (the finish script pushes `pt:deliveries_wake`); otherwise it
looks again when the next delivery is due, or every MAX_IDLE seconds. A killed deliverer's
deliveries are taken again when their leases lapse, by itself restarted or by another one:
any number may run. Redis going away only pauses the loop.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import redis

from src import metrics
from src.callbacks import event, rules, signing, urls
from src.callbacks.client import CallbackClient
from src.callbacks.deliveries import Delivery, DeliveryStore
from src.settings import Settings, current_settings
from src.store import connect

log = logging.getLogger("photo_tasks.deliverer")

THREADS = 256
PER_RECEIVER = 16  # attempts in flight to one receiver (host and port) at once, per deliverer
QUEUED_PER_RECEIVER = 64  # deliveries to a receiver at its share that wait here for a call to end
MAX_IDLE = 0.5  # longest wait between looks at pt:deliveries
BUSY_PAUSE = 0.02  # wait while every thread is in a call
MAX_PAUSE = 5.0  # longest wait for Redis between tries


class Deliverer:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.deliveries = DeliveryStore(connect(settings.redis_url, fail_fast=True))
        self.client = CallbackClient(settings.webhook_timeout, bool(settings.callback_allow_private))
        self.pool = ThreadPoolExecutor(THREADS, thread_name_prefix="delivery")
        self.in_hand = 0
        self.per_receiver: collections.Counter[str] = collections.Counter()
        self.queued: dict[str, collections.deque[Delivery]] = collections.defaultdict(collections.deque)
        self.holding: set[str] = set()  # deliveries in flight or queued here (pt:deliveries members)
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def lease(self) -> float:
        return 2 * self.settings.webhook_timeout + 1

    @property
    def deferral(self) -> float:
        """How long a delivery to a receiver with PER_RECEIVER calls in flight and
        QUEUED_PER_RECEIVER more queued here waits in Redis."""
        return min(5.0, max(0.25, self.settings.webhook_timeout / 4))

    def run(self) -> None:
        pause = 0.1
        while not self.stopping.is_set():
            try:
                self.tick()
                pause = 0.1
            except redis.RedisError as exc:
                log.warning("Redis unavailable (%s); trying again in %.1f s", exc, pause)
                self.stopping.wait(pause)
                pause = min(pause * 2, MAX_PAUSE)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def tick(self) -> None:
        """Start the attempts that are due, as threads allow; then wait for more."""
        with self.lock:
            room = THREADS - self.in_hand
        if room <= 0:
            self.stopping.wait(BUSY_PAUSE)  # every thread is in a call: let one end
            return
        now = time.time()
        taken = self.deliveries.take(now, now + self.lease, room)
        deferred = []
        for delivery in taken:
            receiver = receiver_of(delivery.url)
            with self.lock:
                if delivery.member in self.holding:
                    continue  # queued here past its lease: taking it again renewed the lease
                self.holding.add(delivery.member)
                if self.per_receiver[receiver] >= PER_RECEIVER:  # a slow receiver holds only its share
                    if len(self.queued[receiver]) < QUEUED_PER_RECEIVER:
                        self.queued[receiver].append(delivery)
                    else:
                        deferred.append(delivery)
                        self.holding.discard(delivery.member)
                    continue
                self.per_receiver[receiver] += 1
                self.in_hand += 1
            self.pool.submit(self._attempt, delivery, receiver)
        if deferred:
            self.deliveries.defer(deferred, now + self.deferral)
        if len(taken) == room:
            return  # there may be more due already
        due = self.deliveries.next_due()
        wait = MAX_IDLE if due is None else min(MAX_IDLE, due - time.time())
        if wait > 0:
            self.deliveries.wait_for_wake(wait)

    def _attempt(self, delivery: Delivery, receiver: str, renew: bool = False) -> None:
        try:
            if not renew or self.deliveries.renew(delivery, time.time() + self.lease):
                self._deliver(delivery)
        except Exception:  # its lease lapses and it is taken again
            log.exception("delivery %s (task %s) could not be recorded", delivery.webhook_id, delivery.task_id)
        finally:
            with self.lock:
                self.holding.discard(delivery.member)
                following = self.queued[receiver].popleft() if self.queued[receiver] else None
                if following is None:
                    self.in_hand -= 1
                    self.per_receiver[receiver] -= 1
                    if not self.per_receiver[receiver]:
                        del self.per_receiver[receiver]
                    del self.queued[receiver]
            if following is not None:  # this thread's place goes to the next one queued for the receiver
                self.pool.submit(self._attempt, following, receiver, True)

    def _deliver(self, delivery: Delivery) -> None:
        body = event.body(delivery.task_id, delivery.task)
        headers = signing.headers(self.settings.webhook_key, delivery.webhook_id, int(time.time()), body)
        started = time.perf_counter()
        outcome = self.client.post(delivery.url, body, headers)
        seconds = time.perf_counter() - started
        attempts = delivery.attempts + 1
        verdict = rules.verdict(outcome.status, attempts, self.settings.webhook_retry_schedule,
                                rules.retry_after_seconds(outcome.retry_after))
        self.deliveries.record(delivery, outcome.status, verdict.state, time.time() + verdict.delay)
        metrics.callback_attempt(self.deliveries.redis, verdict.state, seconds)
        log.info("callback %s of task %s, attempt %d: %s -> %s%s", delivery.webhook_id, delivery.task_id, attempts,
                 outcome.status or outcome.error, verdict.state,
                 f" (again in {verdict.delay:g} s)" if verdict.state == "pending" else "")

    def stop(self, *_) -> None:
        self.stopping.set()


def receiver_of(url: str) -> str:
    """Who a callback goes to, for the share each receiver may hold: the URL's host and port."""
    try:
        target = urls.parse(url)
    except urls.RefusedUrl:
        return url
    return f"{target.host}:{target.port}"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = current_settings()
    deliverer = Deliverer(settings)
    signal.signal(signal.SIGTERM, deliverer.stop)
    signal.signal(signal.SIGINT, deliverer.stop)
    if not settings.webhook_secret:  # idle, rather than exit and be restarted over and over
        log.warning("WEBHOOK_SECRET is unset: no callback can be signed, none is delivered")
        deliverer.stopping.wait()
        return
    log.info("delivering callbacks (%d threads, attempts of at most %g s)", THREADS, settings.webhook_timeout)
    deliverer.run()
    # Stop now, not after the attempts in flight: theirs are taken again when their leases lapse.
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
