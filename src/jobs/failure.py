"""What happens to a task whose job raised: it fails, instead of waiting forever.

Not every failure is the task's fault. A job RQ found abandoned (its worker died) or one that
lost Redis midway was lost, not wrong: the sweep (src/jobs/sweep.py) runs it again, and
fails the task only after it has been lost three times.
"""

from __future__ import annotations

import logging

import redis
from rq.exceptions import AbandonedJobError

from src.settings import current_settings
from src.store import Store
from src.tasks import lifecycle

log = logging.getLogger(__name__)
LOSSES = (AbandonedJobError, redis.ConnectionError, redis.TimeoutError)


def mark_task_failed(job, connection, exc_type, exc_value, traceback) -> None:
    task_ids = _task_ids(job)
    if issubclass(exc_type, LOSSES):
        log.warning("job %s for tasks %s was lost (%s); the sweep runs it again", job.id, task_ids, exc_type.__name__)
        return
    log.error("job %s for tasks %s raised %s: %s", job.id, task_ids, exc_type.__name__, exc_value)
    settings = current_settings()
    store = Store(connection, settings.task_ttl, settings.lease)
    for task_id in task_ids:
        task = store.waiting(task_id)
        if task is not None:
            fail_as_bug(store, task_id, task, job.id)


def fail_as_bug(store: Store, task_id: int, task: dict, fence: str) -> None:
    """End a waiting task whose run raised, with `internal_error` (the details are logged)."""
    lifecycle.fail_task(store, task_id, "internal_error",
                        "the task could not be processed; the error is in the worker log",
                        task.get("result_file", ""), fence=fence)


def _task_ids(job) -> list[int]:
    """A resize job is for one task; a scoring job for a list of them."""
    first = job.args[0]
    return list(first) if isinstance(first, list) else [first]
