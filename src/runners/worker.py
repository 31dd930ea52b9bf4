"""`python -m src.runners.worker`: one RQ worker on the service's queues, with RQ's
scheduler. It forks a work horse only for resizes, keeps a liveness heartbeat in Redis, has
a killed horse's job run again at once, and outlives Redis outages. docs/architecture.md
says why each.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import sys
import threading
import time

import redis
from rq import Queue, Worker
from rq.worker import WorkerStatus

from src.jobs import resize, score  # noqa: F401  loaded once here, not in every job
from src.settings import current_settings
from src.storage import preload
from src.store import Store, connect
from src.tasks import liveness, losses, queues

log = logging.getLogger("photo_tasks.worker")

WORKER_TTL = 20  # RQ heartbeats an idle worker every WORKER_TTL - 15 s
JOB_MONITORING_INTERVAL = 5  # ... and a busy one this often
MAINTENANCE_INTERVAL = 30  # RQ restarts a lost scheduler process, cleans its registries
MAX_RECONNECT_DELAY = 10.0
M_ARENA_MAX = -8  # glibc's mallopt() parameter (malloc.h)


class TaskWorker(Worker):
    """An RQ worker that forks only for resizes, and knows which job it is running."""

    running_job = ""
    stop_asked = False
    max_connection_wait_time = 5.0  # RQ's backoff while Redis is away: back within 5 s of it

    def execute_job(self, job, queue):
        self.running_job = job.id
        try:
            if queue.name == queues.RESIZE_QUEUE:
                super().execute_job(job, queue)
            else:  # as RQ's SimpleWorker does
                self.prepare_execution(job)
                self.perform_job(job, queue)
                self.set_state(WorkerStatus.IDLE)
        finally:
            self.running_job = ""

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        """RQ's hook for a work horse that died without ending its job (RQ then marks the
        job failed, but does not call its failure callback)."""
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        settings = current_settings()
        store = Store(self.connection, settings.task_ttl, settings.lease)
        task_id = job.args[0]
        task = store.waiting(task_id)
        if task is not None:
            losses.run_lost_job_again(store, task_id, task, job.id, settings)

    def request_stop(self, signum, frame):
        self.stop_asked = True
        super().request_stop(signum, frame)


class Heartbeat(threading.Thread):
    """Renews the worker's liveness key on a connection of its own."""

    def __init__(self, url: str, worker: TaskWorker, ttl: float):
        super().__init__(name="heartbeat", daemon=True)
        self.client = connect(url, fail_fast=True)
        self.worker, self.ttl = worker, ttl
        self.stopped = threading.Event()

    def run(self) -> None:
        key = liveness.alive_key(self.worker.name)
        while True:
            try:
                self.client.set(key, self.worker.running_job, px=int(self.ttl * 1000))
            except redis.RedisError:
                pass  # Redis is away: the key expires, as it should
            if self.stopped.wait(self.ttl / 4):
                break
        try:
            self.client.delete(key)
        except redis.RedisError:
            pass


def run_once(settings) -> bool:
    """Run one RQ worker until it stops; True when it stopped because it was asked to."""
    conn = connect(settings.redis_url, fail_fast=False)
    worker = TaskWorker([Queue(name, connection=conn) for name in queues.QUEUES], connection=conn,
                        worker_ttl=WORKER_TTL, job_monitoring_interval=JOB_MONITORING_INTERVAL,
                        maintenance_interval=MAINTENANCE_INTERVAL)
    heartbeat = Heartbeat(settings.redis_url, worker, settings.lease)
    heartbeat.start()
    try:
        worker.work(with_scheduler=True, logging_level="INFO")
    finally:
        heartbeat.stopped.set()
        heartbeat.join()
    return worker.stop_asked


def limit_malloc_arenas() -> None:
    """At most 2 malloc arenas in this process, as MALLOC_ARENA_MAX=2 would set, before any
    thread starts. glibc gives threads that allocate arenas of their own (up to 8 per core);
    those of the scoring calls' threads keep memory that every work horse forked for a
    resize inherits (6 MiB of its peak: "Memory" in docs/performance.md)."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)
    except OSError:
        pass  # not glibc: its own allocator


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit_malloc_arenas()
    settings = current_settings()
    preload(settings)
    delay = 0.5
    while True:
        started = time.monotonic()
        try:
            if run_once(settings):
                return
        except redis.RedisError as exc:
            log.warning("Redis unavailable (%s)", exc)
        if time.monotonic() - started > 60:
            delay = 0.5  # a worker that ran a while: this is a new outage
        # RQ's work loop ends on a Redis error; wait, then start a fresh worker.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
        log.info("starting a new worker in %.1f s", delay)
        time.sleep(delay)
        delay = min(delay * 2, MAX_RECONNECT_DELAY)


if __name__ == "__main__":
    main()
