"""The lost-job rule, for the sweep (a job whose lease ran out, its worker gone): a task whose
job will not end gets a new one, until it has been lost MAX_LOSSES times."""

from __future__ import annotations

import logging

from src.store import Store
from src.tasks import lifecycle, liveness, queues

log = logging.getLogger(__name__)

MAX_LOSSES = 3


def run_lost_job_again(store: Store, task_id: int, task: dict, lost: str, settings) -> str:
    """The task's job `lost` will not end: give the task a new job, counting the loss, or
    fail it once it has been lost MAX_LOSSES times. 'replaced', 'fail', or 'moved' when the
    task no longer waits on `lost`. A job started before Redis restarted was lost with
    Redis, not with its worker: it runs again without counting, so the task ends as it
    would have (the contract's promise for a Redis that goes away and comes back); nor does
    one that never started, which no worker had."""
    counted = not (liveness.never_started(store.redis, lost) or liveness.lost_with_redis(store.redis, lost))
    verdict, new_job = replace_job(store, task_id, task["kind"], lost, counted, settings)
    if verdict == "replaced":
        log.warning("task %s: job %s was lost%s; running it again as %s", task_id, lost,
                    "" if counted else " before it started or when Redis restarted (not counted)", new_job)
    elif verdict == "fail":
        log.error("task %s: its job was lost %d times; failing it", task_id, MAX_LOSSES)
        lifecycle.fail_task(store, task_id, "internal_error",
                            f"the task's job was lost {MAX_LOSSES} times (its worker died)",
                            task.get("result_file", ""))
    return verdict


def replace_job(store: Store, task_id: int, kind: str, old_job: str, counted: bool, settings) -> tuple[str, str]:
    """Give the task a new job in place of `old_job` (a loss when `counted`) and enqueue it:
    the store's verdict ('replaced', 'fail', 'moved') and the new job's id."""
    new_job = queues.new_job_id(task_id)
    verdict = store.replace_job(task_id, old_job, new_job, MAX_LOSSES, counted)
    if verdict == "replaced":
        queues.enqueue_task(store.redis, kind, task_id, new_job, settings)
    return verdict, new_job
