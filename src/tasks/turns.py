"""Fair turns (docs/fair-sharing.md): a task's run does not go straight onto RQ's queue; it
waits in its owner's backlog in Redis, and the dispatcher hands the backlogs to RQ in turns,
one task per user per turn (scoring runs in batches that may mix users), keeping RQ's own
queues short: one job waiting per two workers (at least one). So while one user has any number of tasks
waiting, another user's new task starts after about one job per worker.

A task in a backlog is marked in its hash (`turn`), which the sweep counts as alive, as it
does a run due later; moving in and out of a backlog is one Lua script each
(src/store_sharing.py), so a dead dispatcher or a Redis restart loses no task.
"""

from __future__ import annotations

from rq import Queue
from rq.worker import Worker

from src.settings import Settings
from src.store import Store
from src.tasks import queues

DUE_LIMIT = 512  # due runs moved to the backlogs in one tick
QUEUE_KEYS = tuple(Queue.redis_queue_namespace_prefix + name for name in (queues.SCORE_QUEUE, queues.RESIZE_QUEUE))


def hand_out(store: Store, settings: Settings) -> int:
    """Move the due runs to their backlogs, and top RQ's queues up from the backlogs in
    turns; the number of tasks handed to RQ."""
    resizes, batches = store.take_turns(QUEUE_KEYS, Worker.redis_workers_keys, queues.SCORE_BATCH, DUE_LIMIT)
    if resizes or batches:
        queues.enqueue_jobs(store.redis, resizes, batches, settings)
    return len(resizes) + sum(map(len, batches.values()))
