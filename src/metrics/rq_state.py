"""What RQ's own records say about the workers and queues, read without changing anything
(no registry cleanup): shared by GET /readyz and GET /metrics."""

from __future__ import annotations

import redis
from rq import Queue, Worker

from ..queues import QUEUES


def workers_alive(conn: redis.Redis) -> list[str]:
    """The names of the workers registered with RQ whose worker key has not expired."""
    return sorted(worker.name for worker in Worker.all(connection=conn))


def queue_depths(conn: redis.Redis) -> dict[str, int]:
    """How many jobs wait on each of the service's queues."""
    return {name: Queue(name, connection=conn).count for name in QUEUES}
