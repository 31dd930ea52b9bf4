"""What Redis says about the workers and queues, read without changing anything (no
registry cleanup): shared by GET /readyz and GET /metrics."""

from __future__ import annotations

import redis
from rq import Queue, Worker

from src.store import backlog_lengths
from src.tasks.liveness import alive_key
from src.tasks.queues import QUEUES


def workers_alive(conn: redis.Redis) -> list[str]:
    """The names of the workers registered with RQ that keep their liveness key fresh: RQ
    keeps a killed worker registered for a minute or more, its liveness key goes within a
    lease (src/runners/worker.py)."""
    names = [worker.name for worker in Worker.all(connection=conn)]
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(alive_key(name))
        alive = pipe.execute()
    return sorted(name for name, live in zip(names, alive) if live)


def queue_depths(conn: redis.Redis) -> dict[str, int]:
    """How many runs wait on each of the service's queues: RQ's jobs, and the tasks waiting
    their turn in the users' backlogs to become one."""
    waiting = backlog_lengths(conn, QUEUES)
    return {name: Queue(name, connection=conn).count + turns for name, turns in zip(QUEUES, waiting)}
