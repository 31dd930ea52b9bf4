"""The scoring job: one call to the remote scorer per run, never a sleep.

When the scorer says `wait`, or a call fails in a way worth retrying, the next run is
scheduled with RQ's scheduler and the worker is free at once, so a few workers serve any
number of waiting tasks.
"""

from __future__ import annotations

import json
import time

from .. import lifecycle, photos, queues
from ..settings import current_settings
from ..store import Store
from . import running
from .scorer_client import FAULT, READY, REJECTED, WAIT, Answer, ScorerClient

MAX_BACKOFF = 30.0
PROGRESS_SENT = 10
PROGRESS_WAITING_MAX = 95


def score_task(task_id: int) -> str:
    settings = current_settings()
    store = running.current_store()
    task = store.waiting(task_id)
    if task is None:
        return "task gone"
    if time.time() >= float(task["deadline"]):
        return _fail(store, task_id, task, "scorer_timeout", _timeout_message(task, settings))
    if not running.record_progress(store, task_id, PROGRESS_SENT, state="running"):
        return "task gone"  # deleted since it was read
    answer = _call(ScorerClient(settings.scorer_url, settings.scorer_timeout), task, settings)
    if answer.kind == READY:
        return _finish(store, task_id, task, answer.result)
    if answer.kind == REJECTED:
        return _fail(store, task_id, task, "scorer_rejected", f"the scorer rejected the task ({answer.detail})")
    if answer.kind == WAIT:
        rounds = int(task.get("rounds", 0)) + 1
        return _run_again(store, task_id, task, settings.scorer_retry_delay, settings,
                          percent=_wait_progress(rounds), retry_id=json.dumps(answer.retry_id),
                          rounds=rounds, faults=0)
    assert answer.kind == FAULT
    faults = int(task.get("faults", 0)) + 1
    backoff = min(settings.scorer_retry_delay * 2 ** (faults - 1), MAX_BACKOFF)
    return _run_again(store, task_id, task, backoff, settings, faults=faults, last_fault=answer.detail)


def _call(client: ScorerClient, task: dict, settings) -> Answer:
    if task.get("retry_id"):
        return client.poll(json.loads(task["retry_id"]))
    path = photos.photo_path(settings.upload_dir, task["digest"])
    return client.start(task["name"], path, task["filename"], task["content_type"])


def _wait_progress(rounds: int) -> int:
    """Rises with every wait round, ever more slowly, and stays below 100."""
    span = PROGRESS_WAITING_MAX - PROGRESS_SENT
    return PROGRESS_SENT + int(span * (1 - 0.6 ** rounds))


def _run_again(store: Store, task_id: int, task: dict, delay: float, settings,
               percent: int | None = None, **fields) -> str:
    """Record what this run learnt, and schedule the next run after `delay`, but no later
    than the task's deadline."""
    at = min(time.time() + delay, float(task["deadline"]))
    job_id = queues.new_job_id(task_id)
    if not running.record_progress(store, task_id, percent, job_id=job_id, **fields):
        return "task gone"
    queues.schedule_score(store.redis, task_id, job_id, settings, at)
    return f"next run in {delay:g} s"


def _finish(store: Store, task_id: int, task: dict, result: float) -> str:
    lifecycle.finish_task(store, task_id, task["digest"], result)
    return "ready"


def _fail(store: Store, task_id: int, task: dict, code: str, message: str) -> str:
    lifecycle.fail_task(store, task_id, task["digest"], code, message)
    return code


def _timeout_message(task: dict, settings) -> str:
    message = f"the scorer gave no result within {settings.scorer_deadline:g} s"
    if int(task.get("faults", 0)):
        message += f" (last error: {task.get('last_fault')})"
    return message
