"""The events the service counts where they happen (web process or worker), each recorded by a
one-line hook in the code that makes it happen. Recording never breaks the work: when Redis
refuses a count, the count is lost and a warning logged. (A created task is counted in the
round trip that enqueues its job, so that count stands or falls with the job.)"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import redis
from rq import get_current_job

from src.metrics.shared import SharedMetric

log = logging.getLogger(__name__)

TASKS_CREATED = SharedMetric("photo_tasks_tasks_created", "Tasks created, by kind.", ("kind",))
TASKS_FINISHED = SharedMetric(
    "photo_tasks_tasks_finished",
    "Tasks that ended, by kind and outcome: ready, or the failure code.", ("kind", "outcome"))
SCORER_CALLS = SharedMetric(
    "photo_tasks_scorer_call_duration_seconds",
    "Calls to the remote scorer, by outcome (ready, wait, rejected, fault), and how long each took.",
    ("outcome",), (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RESIZES = SharedMetric(
    "photo_tasks_resize_duration_seconds", "How long resize jobs took, from start to the stored result.",
    (), (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
CALLBACK_ATTEMPTS = SharedMetric(
    "photo_tasks_callback_attempt_duration_seconds",
    "Callback attempts, by what came of them (delivered, pending: tried again, failed), and how long each took.",
    ("outcome",), (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15))
SHARED = (TASKS_CREATED, TASKS_FINISHED, SCORER_CALLS, RESIZES, CALLBACK_ATTEMPTS)


def task_created(kind: str) -> tuple[str, str]:
    """Where a new task is counted: the script that starts it adds one there (exactly once,
    whichever POST starts it)."""
    return TASKS_CREATED.counter((kind,))


def task_finished(conn: redis.Redis, kind: str, outcome: str) -> None:
    """Count a task that has just ended (ready, or failed with the code `outcome`)."""
    _record(conn, lambda pipe: TASKS_FINISHED.add(pipe, (kind, outcome)))


def callback_attempt(conn: redis.Redis, outcome: str, seconds: float) -> None:
    """Count one callback attempt (src/runners/deliverer.py) and how long it took."""
    _record(conn, lambda pipe: CALLBACK_ATTEMPTS.observe(pipe, (outcome,), seconds))


def _timed(metric: SharedMetric, labels_of: Callable[[object], tuple[str, ...]] = lambda result: ()):
    """A decorator for a function that runs in an RQ job: observe how long each call took,
    labelled from what it returned (a call that raises is not observed)."""

    def decorate(function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            result = function(*args, **kwargs)
            seconds = time.perf_counter() - started
            job = get_current_job()
            if job is not None:
                _record(job.connection, lambda pipe: metric.observe(pipe, labels_of(result), seconds))
            return result

        return timed

    return decorate


scorer_call_timed = _timed(SCORER_CALLS, lambda answer: (answer.kind,))
resize_timed = _timed(RESIZES)


def _record(conn: redis.Redis, write: Callable) -> None:
    try:
        pipe = conn.pipeline()
        write(pipe)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("a metric was not recorded: %s", exc)
