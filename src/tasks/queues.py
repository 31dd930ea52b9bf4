"""Putting tasks' jobs on the RQ queues, and cancelling them. Job functions are named by their
import path, so the web process never imports the job code. Every run is handed to RQ by the
dispatcher, in turns by user (src/tasks/turns.py; docs/architecture.md).
"""

from __future__ import annotations

import math
import uuid

import redis
from rq import Callback, Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from src.settings import Settings
from src.store import take_turn

SCORE_QUEUE = "score"
RESIZE_QUEUE = "resize"
QUEUES = (SCORE_QUEUE, RESIZE_QUEUE)
SCORE_BATCH = 16  # most tasks one scoring job runs; also its connections kept open to the scorer

JOBS = {SCORE_QUEUE: "src.jobs.score.score_tasks", RESIZE_QUEUE: "src.jobs.resize.resize_task"}
RESIZE_JOB_TIMEOUT = 300  # seconds; a 50 MP image takes about one
_SWEEP_JOBS = ("src.jobs.sweep.sweep_tasks", "src.jobs.sweep.sweep_files")
_ON_FAILURE = Callback("src.jobs.failure.mark_task_failed")


def new_job_id(task_id: int) -> str:
    return f"task-{task_id}-{uuid.uuid4().hex[:12]}"


def enqueue_task(conn: redis.Redis, kind: str, task_id: int, job_id: str, settings: Settings,
                 pipeline: redis.client.Pipeline | None = None) -> Job:
    """Put the job of task `task_id` (of `kind`: a queue name) on its queue; with `pipeline`,
    when the caller executes it."""
    tasks = [task_id] if kind == SCORE_QUEUE else task_id  # a scoring job takes a batch
    job = _task_job(conn, kind, tasks, job_id, settings)
    return Queue(kind, connection=conn).enqueue_job(job, pipeline=pipeline)


def start_task(store, kind: str, task_id: int, owner: str, counted_as: tuple[str, str]) -> bool:
    """Start a claimed task's work: its first run waits for its turn in its owner's backlog
    (src/tasks/turns.py), whence the dispatcher hands it to RQ (a scoring task's first call
    batched as polls are). False when it was started already."""
    return store.join_backlog(task_id, kind, owner, counted_as)


def enqueue_jobs(conn: redis.Redis, resizes: dict[int, str], batches: dict[str, list[int]],
                 settings: Settings) -> None:
    """Enqueue one resize job per task (task -> job id) and one scoring job per batch (job
    id -> its tasks), all in one round trip."""
    with conn.pipeline() as pipe:
        for task_id, job_id in resizes.items():
            enqueue_task(conn, RESIZE_QUEUE, task_id, job_id, settings, pipe)
        queue = Queue(SCORE_QUEUE, connection=conn)
        for job_id, task_ids in batches.items():
            queue.enqueue_job(_task_job(conn, SCORE_QUEUE, task_ids, job_id, settings), pipeline=pipe)
        pipe.execute()


def _task_job(conn: redis.Redis, kind: str, tasks: int | list[int], job_id: str, settings: Settings) -> Job:
    """A task's job (a scoring job: a batch of tasks' runs), named after its tasks for
    rq-dashboard (`score task 7`, `score tasks 7, 9`), failing its tasks if it raises."""
    numbers = tasks if isinstance(tasks, list) else [tasks]
    description = f"{kind} task{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"
    # A scoring run makes one call per task, side by side: its connect and read timeouts,
    # plus slack for the rest.
    timeout = 2 * settings.scorer_timeout + 30 if kind == SCORE_QUEUE else RESIZE_JOB_TIMEOUT
    return Queue(kind, connection=conn).create_job(
        JOBS[kind], args=(tasks,), job_id=job_id, description=description,
        timeout=math.ceil(timeout), result_ttl=3600, failure_ttl=7 * 24 * 3600, on_failure=_ON_FAILURE)


def enqueue_sweeps(conn: redis.Redis, interval: float) -> None:
    """Enqueue the sweeps, unless a dispatcher did so within `interval` seconds, or they
    still wait on the queue (no worker free: no need to pile up more)."""
    if not take_turn(conn, "sweeps", interval):
        return
    queue = Queue(SCORE_QUEUE, connection=conn)
    for function in _SWEEP_JOBS:
        job_id = function.rsplit(".", 1)[1].replace("_", "-")  # sweep-tasks, sweep-files
        if conn.hget(Job.key_for(job_id), "status") == JobStatus.QUEUED.value.encode():
            continue
        queue.enqueue(function, job_id=job_id, description=job_id.replace("-", " "), result_ttl=60,
                      failure_ttl=24 * 3600, job_timeout=max(60, math.ceil(4 * interval)))


def cancel(conn: redis.Redis, job_id: str, task_id: int) -> None:
    """Cancel the queued job of task `task_id`. A running one is left to finish, and a
    scoring job that also carries other tasks' runs is left for them: either way the run for
    this task finds it gone and does nothing. A cancel that races a worker taking the job
    (its status read `queued` here, `started` by the time RQ 2.12's cancel reads it again)
    makes RQ raise ValueError ("Execution ... not found in Redis") as it reads the job's
    executions, before its pipeline changes anything: the job runs and finds the task gone."""
    try:
        job = Job.fetch(job_id, connection=conn)
        if job.args[0] in (task_id, [task_id]) and job.get_status() == JobStatus.QUEUED:
            job.cancel()
    except (NoSuchJobError, InvalidJobOperation, ValueError):
        pass
