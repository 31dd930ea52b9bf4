"""The worker of bench/web_memory.py and bench/storage.py: our TaskWorker (src/runners/worker.py)
in burst mode, set up as `python -m src.runners.worker` sets it up, in a process that imports
what that imports and no more (the benchmark's own imports would count in the worker's memory).
It hands the tasks waiting in their backlogs to RQ as the dispatcher would (src/tasks/turns.py),
a few at a time, and runs them, until none is left. Prints, as JSON, its own peak RSS (VmHWM:
getrusage's figure would carry over its parent's peak across exec) and its RSS once the jobs
are done (VmRSS: what WORKER_MAX_MEMORY is compared with).

    python bench/memory_worker.py [--warm ROUNDS]

--warm: first, as a worker that has been scoring, ROUNDS batches of BATCH scorer calls side
by side, on the scoring job's own thread pool and client (src/jobs/score.py), each sending
the photo at $WARM_PHOTO to the scorer at $SCORER_URL.
"""

from __future__ import annotations

import argparse
import json
import os

from rq import Queue

from src.jobs import score
from src.runners.worker import TaskWorker, limit_malloc_arenas
from src.settings import current_settings
from src.storage import preload
from src.store import Store, connect
from src.tasks import queues, turns
from src.tasks.queues import QUEUES


def warm_up(rounds: int, photo: str) -> None:
    client, calls = score.scorer(), score._calls()
    for round_ in range(rounds):
        answers = calls.map(lambda call: client.start(f"warm {round_} {call}", photo, "photo.jpg", "image/jpeg"),
                            range(queues.SCORE_BATCH))
        kinds = {answer.kind for answer in answers}
        assert kinds == {"ready"}, kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=0)
    args = parser.parse_args()
    limit_malloc_arenas()
    preload(current_settings())  # as the worker does: the S3 client, when STORAGE_URL is set
    if args.warm:
        warm_up(args.warm, os.environ["WARM_PHOTO"])
    settings = current_settings()
    conn = connect(settings.redis_url, fail_fast=False)
    store = Store(conn, settings.task_ttl, settings.lease)
    while turns.hand_out(store, settings):
        TaskWorker([Queue(name, connection=conn) for name in QUEUES], connection=conn).work(burst=True)
    with open("/proc/self/status") as status:
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status if line.startswith("Vm")}
    print(json.dumps({"own_peak_rss": fields["VmHWM"], "own_rss_after": fields["VmRSS"]}))


if __name__ == "__main__":
    main()
