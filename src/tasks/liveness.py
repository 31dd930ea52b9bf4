"""Telling whether a task's job is still alive: on its queue, or run by a worker whose
heartbeat (src/runners/worker.py) says it is running it; and whether a lost job was lost
with Redis rather than with its worker."""

from __future__ import annotations

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import str_to_date

_ALIVE_PREFIX = "pt:alive:"


def alive_key(worker_name: str) -> str:
    """Holds the id of the job a live worker is running ('' when idle); expires when the
    worker stops renewing it (src/runners/worker.py)."""
    return _ALIVE_PREFIX + worker_name


def never_started(conn: redis.Redis, job_id: str) -> bool:
    """Did this job never start? (A dispatcher died between handing it out and enqueuing it,
    or Redis lost its queue entry.) Then it was lost before a worker had it."""
    return not conn.hget(Job.key_for(job_id), "started_at")


def lost_with_redis(conn: redis.Redis, job_id: str) -> bool:
    """Was this job started before Redis last started (from its append-only file)? Then it
    was lost because Redis went away mid-run (its writes failed; its worker carries on), not
    because its worker died. RQ records when a job started; Redis says how long it has been
    up, in whole seconds, so a job started within a second after a restart counts as before
    it (never the other way round)."""
    started = conn.hget(Job.key_for(job_id), "started_at")
    if not started:
        return False
    server = conn.info("server")
    redis_started = server["server_time_usec"] / 1e6 - server["uptime_in_seconds"]
    return str_to_date(started).timestamp() < redis_started


def job_is_alive(conn: redis.Redis, job_id: str) -> bool:
    """Will this job still run or end? Waiting on its queue, or started by a worker that is
    alive and says it is running it. A job that says `queued` but is on no list (a worker
    took it and died, or Redis lost the move) will not, nor will a failed, stopped,
    finished or missing one."""
    status, worker, origin = conn.hmget(Job.key_for(job_id), "status", "worker_name", "origin")
    if status == JobStatus.QUEUED.value.encode() and origin:
        queue = Queue(origin.decode(), connection=conn)
        return any(conn.lpos(key, job_id) is not None for key in (queue.key, queue.intermediate_queue_key))
    if status == JobStatus.STARTED.value.encode() and worker:
        return conn.get(alive_key(worker.decode())) == job_id.encode()
    return False
