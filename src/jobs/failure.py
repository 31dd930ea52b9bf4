"""What happens to a task whose job raised: it fails, instead of waiting forever."""

from __future__ import annotations

import logging

from .. import lifecycle
from ..settings import current_settings
from ..store import Store

log = logging.getLogger(__name__)


def mark_task_failed(job, connection, exc_type, exc_value, traceback) -> None:
    task_id = job.args[0]
    log.error("job %s for task %s raised %s: %s", job.id, task_id, exc_type.__name__, exc_value)
    store = Store(connection, current_settings().task_ttl)
    task = store.get(task_id)
    if task is not None:
        lifecycle.fail_task(store, task_id, task["digest"], "internal_error",
                            "the task could not be processed; the error is in the worker log",
                            task.get("result_file", ""))
