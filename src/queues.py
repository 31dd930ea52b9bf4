"""Putting work on the RQ queues, scheduling it for later, and cancelling it.

Job functions are named by their import path, so the web process never imports the job
code (and its scorer client). Scheduled times are rounded up to a whole second: RQ's
scheduler keeps whole-second timestamps, and a poll must never run before its delay.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import datetime, timezone

import redis
from rq import Callback, Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from .settings import Settings

SCORE_QUEUE = "score"
RESIZE_QUEUE = "resize"
QUEUES = (SCORE_QUEUE, RESIZE_QUEUE)

_SCORE_JOB = "src.jobs.score.score_task"
_RESIZE_JOB = "src.jobs.resize.resize_task"
RESIZE_JOB_TIMEOUT = 300  # seconds; a 50 MP image takes about one
_EXPIRE_JOB = "src.jobs.expire.expire_task"
_ON_FAILURE = Callback("src.jobs.failure.mark_task_failed")


def new_job_id(task_id: int) -> str:
    return f"task-{task_id}-{uuid.uuid4().hex[:12]}"


def enqueue_score(conn: redis.Redis, task_id: int, job_id: str, settings: Settings) -> Job:
    return Queue(SCORE_QUEUE, connection=conn).enqueue(
        _SCORE_JOB, task_id, **_score_options(task_id, job_id, settings))


def schedule_score(conn: redis.Redis, task_id: int, job_id: str, settings: Settings, at: float) -> Job:
    return Queue(SCORE_QUEUE, connection=conn).enqueue_at(
        _whole_second(at), _SCORE_JOB, task_id, **_score_options(task_id, job_id, settings))


def enqueue_resize(conn: redis.Redis, task_id: int, job_id: str) -> Job:
    return Queue(RESIZE_QUEUE, connection=conn).enqueue(
        _RESIZE_JOB, task_id, **_task_options("resize", task_id, job_id, RESIZE_JOB_TIMEOUT))


def schedule_expiry(conn: redis.Redis, task_id: int, digest: str, after: float, result_file: str = "") -> Job:
    """Forget a finished task's files when its time to live ends (its keys expire in Redis)."""
    return Queue(SCORE_QUEUE, connection=conn).enqueue_at(
        _whole_second(time.time() + after), _EXPIRE_JOB, task_id, digest, result_file,
        description=f"expire task {task_id}", result_ttl=0, failure_ttl=24 * 3600)


def cancel(conn: redis.Redis, job_id: str) -> None:
    """Cancel a queued or scheduled job; a running one is left to finish (its outcome is
    thrown away because its task is gone)."""
    try:
        job = Job.fetch(job_id, connection=conn)
        if job.get_status() in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
            job.cancel()
    except (NoSuchJobError, InvalidJobOperation):
        pass


def _score_options(task_id: int, job_id: str, settings: Settings) -> dict:
    # One run makes one call: its connect and read timeouts, plus slack for the rest.
    return _task_options("score", task_id, job_id, 2 * settings.scorer_timeout + 30)


def _task_options(kind: str, task_id: int, job_id: str, timeout: float) -> dict:
    """A task's job: named after the task (for rq-dashboard), failing the task if it raises."""
    return dict(
        job_id=job_id,
        description=f"{kind} task {task_id}",
        job_timeout=math.ceil(timeout),
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
        on_failure=_ON_FAILURE,
    )


def _whole_second(at: float) -> datetime:
    return datetime.fromtimestamp(math.ceil(at), tz=timezone.utc)
