"""`python -m src.runners.worker`: one RQ worker on the service's queues, with RQ's
scheduler. Every job runs in the worker process itself, resizes as scoring runs (a work
horse forked per job cost a resize about 14 ms of CPU: docs/cost.md); isolation is kept as
Celery's `max_tasks_per_child` / `max_memory_per_child` keep it: past WORKER_MAX_JOBS jobs or
WORKER_MAX_MEMORY MiB the worker replaces itself with a fresh process (exec, the same pid). A
heartbeat keeps `pt:alive:<worker>` in Redis so the sweep can tell a dead worker's job, and
the process outlives Redis outages. docs/architecture.md says why each.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import sys
import threading
import time

import redis
from rq import Queue, SimpleWorker

from src.jobs import resize, score  # noqa: F401  loaded once here, not in every job
from src.settings import current_settings
from src.storage import preload
from src.store import Store, connect
from src.tasks import liveness, queues

log = logging.getLogger("photo_tasks.worker")

WORKER_TTL = 20  # RQ heartbeats an idle worker every WORKER_TTL - 15 s
JOB_MONITORING_INTERVAL = 5  # ... and a busy one this often
MAINTENANCE_INTERVAL = 30  # RQ restarts a lost scheduler process, cleans its registries
MAX_RECONNECT_DELAY = 10.0
M_ARENA_MAX = -8  # glibc's mallopt() parameter (malloc.h)
# Freed memory a worker keeps for its next resize: handing it back and faulting it in again
# cost a 2 MP resize 3 ms of its 36 ms of CPU (docs/cost.md); past this, it is handed back.
KEPT_FREE = 32 * 2**20


class TaskWorker(SimpleWorker):
    """An RQ worker that runs its jobs in its own process, knows which job it is running, and
    asks to be replaced past `max_jobs` jobs or `max_memory` bytes of RSS (0: no bound)."""

    running_job = ""
    stop_asked = False
    max_connection_wait_time = 5.0  # RQ's backoff while Redis is away: back within 5 s of it
    max_jobs = 0
    max_memory = 0
    jobs_done = 0
    replace_me = ""  # why this worker should be replaced, once it is
    store: Store | None = None  # the task store, on the worker's connection

    def execute_job(self, job, queue):
        self.running_job = job.id
        first_job_rss()  # measured once, before this process's first job
        if self.store:
            self._wake_dispatcher()
        try:
            super().execute_job(job, queue)
        finally:
            self.running_job = ""
        if job.func_name.startswith("src.jobs.sweep."):
            return  # bookkeeping, not a task's job: neither counted nor a reason to go
        self.jobs_done += 1
        if queue.name == queues.RESIZE_QUEUE and resident_bytes() > first_job_rss() + KEPT_FREE:
            give_memory_back()
        if self.max_jobs and self.jobs_done >= self.max_jobs:
            self.replace_me = f"{self.jobs_done} jobs done (WORKER_MAX_JOBS)"
        elif self.max_memory and (rss := resident_bytes()) > self.max_memory:
            self.replace_me = f"{rss / 2**20:.0f} MiB resident (WORKER_MAX_MEMORY)"
        if self.replace_me:
            self._stop_requested = True  # RQ's own flag: stop after this job, deregistered

    def _wake_dispatcher(self) -> None:
        """RQ's queue is a job shorter: the dispatcher tops it up at once (docs/cost.md, §3).
        Best effort: without it the dispatcher's tick does the same, TICK later."""
        try:
            self.store.wake_dispatcher()
        except redis.RedisError:
            pass

    def request_stop(self, signum, frame):
        self.stop_asked = True
        super().request_stop(signum, frame)


def give_memory_back() -> None:
    """Return the free memory of glibc's heap to the system (`malloc_trim`): what a resize's
    pixels took is free once it is done, but glibc keeps it for reuse."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


@functools.cache
def first_job_rss() -> int:
    """This process's resident bytes when its first job came (a fresh process after exec)."""
    return resident_bytes()


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


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


def run_once(settings) -> TaskWorker:
    """Run one RQ worker until it stops."""
    conn = connect(settings.redis_url, fail_fast=False)
    worker = TaskWorker([Queue(name, connection=conn) for name in queues.QUEUES], connection=conn,
                        worker_ttl=WORKER_TTL, job_monitoring_interval=JOB_MONITORING_INTERVAL,
                        maintenance_interval=MAINTENANCE_INTERVAL)
    worker.max_jobs, worker.max_memory = settings.worker_max_jobs, settings.worker_max_memory * 2**20
    worker.store = Store(conn, settings.task_ttl, settings.lease)
    heartbeat = Heartbeat(settings.redis_url, worker, settings.lease)
    heartbeat.start()
    try:
        worker.work(with_scheduler=True, logging_level="INFO")
    finally:
        heartbeat.stopped.set()
        heartbeat.join()
    return worker


def replace_this_process(why: str) -> None:
    """Start afresh in this process (exec): the same pid and session, new memory."""
    log.info("replacing this worker with a fresh process: %s", why)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "src.runners.worker"])


def limit_malloc_arenas() -> None:
    """At most 2 malloc arenas in this process, as MALLOC_ARENA_MAX=2 would set, before any
    thread starts. glibc gives threads that allocate arenas of their own (up to 8 per core);
    those of the scoring calls' threads keep memory the worker holds while it resizes
    (6 MiB of a resize's peak: "Memory" in docs/performance.md)."""
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
            worker = run_once(settings)
            if worker.replace_me and not worker.stop_asked:
                replace_this_process(worker.replace_me)
            if worker.stop_asked:
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
