"""The scoring job: one call to the remote scorer per task per run, never a sleep.

When the scorer says `wait`, or a call fails in a way worth retrying, the task is put on
`pt:due` for its next run and the worker is free at once; the dispatcher enqueues the next
run when it is due. So a few workers serve any number of waiting tasks.

One job may carry the runs of several tasks: the dispatcher puts the polls that come due
together into one job (up to queues.SCORE_BATCH), whose calls go out side by side on the worker's pooled
connections. RQ's own cost per job (a dozen Redis round trips) is then paid once per batch,
not once per poll. Each task in the batch names the job (its fence), so a lost batch is
re-run task by task by the sweep, like any lost job.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import redis

from src.jobs import running
from src.jobs.failure import fail_as_bug
from src.jobs.scorer_client import FAULT, READY, REJECTED, WAIT, Answer, ScorerClient
from src.limits.disk import is_disk_full
from src.settings import Settings, current_settings
from src.storage import StoreUnavailable
from src.store import Store
from src.tasks import lifecycle, queues

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
MAX_RESTARTS = 3  # a scorer that forgot our retry_id: start over with the photo, this often
PROGRESS_SENT = 10
PROGRESS_WAITING_MAX = 95
STORE_RETRY_DELAY = 2.0  # seconds before a run that found the object store away (or the disk full) is tried again


class Run(NamedTuple):
    """What one run of a task works with: the store, the settings, and its job's id."""

    store: Store
    settings: Settings
    fence: str


@functools.cache
def scorer() -> ScorerClient:
    """One client per worker process: its connections to the scorer are kept and reused."""
    settings = current_settings()
    return ScorerClient(settings.scorer_url, settings.scorer_timeout, pool_size=queues.SCORE_BATCH)


@functools.cache
def _calls() -> ThreadPoolExecutor:
    """Threads for the calls of one batch, made once per worker process."""
    return ThreadPoolExecutor(max_workers=queues.SCORE_BATCH, thread_name_prefix="scorer-call")


def score_tasks(task_ids: list[int]) -> str:
    """The job: one run of each task, side by side."""
    run = Run(running.current_store(), current_settings(), running.fence())
    if len(task_ids) == 1:
        outcomes = [_guarded(run, task_ids[0])]
    else:
        outcomes = list(_calls().map(functools.partial(_guarded, run), task_ids))
    return ", ".join(f"task {task_id}: {outcome}" for task_id, outcome in zip(task_ids, outcomes))


def _guarded(run: Run, task_id: int) -> str:
    """One task's run; a bug fails that task alone. Losing Redis is not the task's fault:
    the job fails, and the sweep runs each of its tasks again."""
    try:
        return _score(run, task_id)
    except redis.RedisError:
        raise
    except Exception:
        task = run.store.waiting(task_id)
        if task is None:  # deleted meanwhile, its photo with it: nothing went wrong
            return "task gone"
        log.exception("scoring task %s raised", task_id)
        fail_as_bug(run.store, task_id, task, run.fence)
        return "internal_error"


def _score(run: Run, task_id: int) -> str:
    store, settings = run.store, run.settings
    task = store.waiting(task_id)
    if task is None or task.get("job_id") != run.fence:
        return "task gone"  # deleted, finished, or this run was replaced by another
    if lifecycle.fail_overdue(store, task_id, task, settings.scorer_deadline):
        return "scorer_timeout"
    if task["state"] == "queued" and not _record(run, task_id, PROGRESS_SENT, state="running"):
        return "task gone"
    polling = bool(task.get("retry_id"))
    try:
        answer = _call(task)
    except StoreUnavailable as exc:  # not the scorer's fault, nor the task's: wait for the store
        return _run_again(run, task_id, task, STORE_RETRY_DELAY, last_fault=str(exc))
    except OSError as exc:  # the photo's copy from the store met a full disk: run again later
        if not is_disk_full(exc):
            raise
        return _run_again(run, task_id, task, STORE_RETRY_DELAY, last_fault=f"the disk is full: {exc}")
    if answer.kind == READY:
        lifecycle.finish_task(store, task_id, answer.result, fence=run.fence)
        return "ready"
    if answer.kind == REJECTED:
        return _rejected(run, task_id, task, answer, polling)
    if answer.kind == WAIT:
        rounds = int(task.get("rounds", 0)) + 1
        return _run_again(run, task_id, task, settings.scorer_retry_delay,
                          percent=_wait_progress(rounds), retry_id=json.dumps(answer.retry_id),
                          rounds=rounds, faults=0)
    assert answer.kind == FAULT
    faults = int(task.get("faults", 0)) + 1
    backoff = min(settings.scorer_retry_delay * 2 ** (faults - 1), MAX_BACKOFF)
    return _run_again(run, task_id, task, backoff, faults=faults, last_fault=answer.detail)


def _call(task: dict) -> Answer:
    if task.get("retry_id"):
        return scorer().poll(json.loads(task["retry_id"]))
    with running.storage().open_photo(task["digest"]) as photo:
        return scorer().start(task["name"], photo, task["filename"], task["content_type"])


def _rejected(run: Run, task_id: int, task: dict, answer: Answer, polling: bool) -> str:
    """A rejected first call fails the task. A rejected poll means the scorer lost our
    retry_id (it restarted): start over with the photo, a few times at most."""
    restarts = int(task.get("restarts", 0)) + 1
    if polling and restarts <= MAX_RESTARTS:
        return _run_again(run, task_id, task, 0, retry_id="", restarts=restarts,
                          last_fault=f"the scorer forgot the task ({answer.detail})")
    message = f"the scorer rejected the task ({answer.detail})"
    if polling:
        message += f"; it had forgotten the task {MAX_RESTARTS} times before"
    lifecycle.fail_task(run.store, task_id, "scorer_rejected", message, fence=run.fence)
    return "scorer_rejected"


def _wait_progress(rounds: int) -> int:
    """Rises with every wait round, ever more slowly, and stays below 100."""
    span = PROGRESS_WAITING_MAX - PROGRESS_SENT
    return PROGRESS_SENT + int(span * (1 - 0.6 ** rounds))


def _run_again(run: Run, task_id: int, task: dict, delay: float, percent: int | None = None, **fields) -> str:
    """Record what this run learnt, and have the next run come after `delay`, but no later
    than the task's deadline."""
    at = min(time.time() + delay, float(task["deadline"]))
    if not _record(run, task_id, percent, due=at, **fields):
        return "task gone"
    return f"next run in {delay:g} s"


def _record(run: Run, task_id: int, progress: int | None, **fields) -> bool:
    """Save progress and fields on the task, if it still names this job."""
    return run.store.update(task_id, progress, fence=run.fence, **fields) is not None
