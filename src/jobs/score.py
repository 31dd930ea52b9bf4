"""The scoring job: one call to the remote scorer per run, never a sleep.

When the scorer says `wait`, or a call fails in a way worth retrying, the task is put on
`pt:due` for its next run and the worker is free at once; the dispatcher enqueues the next
run when it is due. So a few workers serve any number of waiting tasks.
"""

from __future__ import annotations

import functools
import json
import time

from .. import lifecycle, photos
from ..settings import current_settings
from ..store import Store
from . import running
from .scorer_client import FAULT, READY, REJECTED, WAIT, Answer, ScorerClient

MAX_BACKOFF = 30.0
MAX_RESTARTS = 3  # a scorer that forgot our retry_id: start over with the photo, this often
PROGRESS_SENT = 10
PROGRESS_WAITING_MAX = 95


@functools.cache
def scorer() -> ScorerClient:
    """One client per worker process: its connections to the scorer are kept and reused."""
    settings = current_settings()
    return ScorerClient(settings.scorer_url, settings.scorer_timeout)


def score_task(task_id: int) -> str:
    settings = current_settings()
    store = running.current_store()
    task = store.waiting(task_id)
    if task is None or task.get("job_id") != running.fence():
        return "task gone"  # deleted, finished, or this run was replaced by another
    if lifecycle.fail_overdue(store, task_id, task, settings.scorer_deadline):
        return "scorer_timeout"
    if task["state"] == "queued" and not running.record(store, task_id, PROGRESS_SENT, state="running"):
        return "task gone"
    polling = bool(task.get("retry_id"))
    answer = _call(task, settings)
    if answer.kind == READY:
        lifecycle.finish_task(store, task_id, task["digest"], answer.result, fence=running.fence())
        return "ready"
    if answer.kind == REJECTED:
        return _rejected(store, task_id, task, answer, polling)
    if answer.kind == WAIT:
        rounds = int(task.get("rounds", 0)) + 1
        return _run_again(store, task_id, task, settings.scorer_retry_delay,
                          percent=_wait_progress(rounds), retry_id=json.dumps(answer.retry_id),
                          rounds=rounds, faults=0)
    assert answer.kind == FAULT
    faults = int(task.get("faults", 0)) + 1
    backoff = min(settings.scorer_retry_delay * 2 ** (faults - 1), MAX_BACKOFF)
    return _run_again(store, task_id, task, backoff, faults=faults, last_fault=answer.detail)


def _call(task: dict, settings) -> Answer:
    if task.get("retry_id"):
        return scorer().poll(json.loads(task["retry_id"]))
    path = photos.photo_path(settings.upload_dir, task["digest"])
    return scorer().start(task["name"], path, task["filename"], task["content_type"])


def _rejected(store: Store, task_id: int, task: dict, answer: Answer, polling: bool) -> str:
    """A rejected first call fails the task. A rejected poll means the scorer lost our
    retry_id (it restarted): start over with the photo, a few times at most."""
    restarts = int(task.get("restarts", 0)) + 1
    if polling and restarts <= MAX_RESTARTS:
        return _run_again(store, task_id, task, 0, retry_id="", restarts=restarts,
                          last_fault=f"the scorer forgot the task ({answer.detail})")
    message = f"the scorer rejected the task ({answer.detail})"
    if polling:
        message += f"; it had forgotten the task {MAX_RESTARTS} times before"
    lifecycle.fail_task(store, task_id, task["digest"], "scorer_rejected", message, fence=running.fence())
    return "scorer_rejected"


def _wait_progress(rounds: int) -> int:
    """Rises with every wait round, ever more slowly, and stays below 100."""
    span = PROGRESS_WAITING_MAX - PROGRESS_SENT
    return PROGRESS_SENT + int(span * (1 - 0.6 ** rounds))


def _run_again(store: Store, task_id: int, task: dict, delay: float,
               percent: int | None = None, **fields) -> str:
    """Record what this run learnt, and have the next run come after `delay`, but no later
    than the task's deadline."""
    at = min(time.time() + delay, float(task["deadline"]))
    if not running.record(store, task_id, percent, due=at, **fields):
        return "task gone"
    return f"next run in {delay:g} s"
