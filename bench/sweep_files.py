"""How long the file sweep takes when many stored photos and results are in use.

`sweep_files` runs every SWEEP_INTERVAL on a worker of the `score` queue, so whatever it
costs is taken from scoring. Every photo of a task that has not yet expired (TASK_TTL: a
week by default) is a file under `uploads/photos/`; here N such photos and N named results,
all older than ORPHAN_GRACE and all still in use (so nothing may be removed), lie in a
temporary upload folder, and the sweep runs as RQ runs it (a job on the `score` queue, taken
by a SimpleWorker in burst mode) on a private valkey, each time as when the orphan scan's
turn has come (it comes every tenth of ORPHAN_GRACE: `sweep.orphan_scan_interval`).
Reported: each run's time, from RQ's job times, for each N (the files of a smaller N stay
when a larger one is laid out).

    make bench-sweep    # = .venv/bin/python bench/sweep_files.py   (--counts 1000,10000 --runs 3)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import redis
from rq import Queue, SimpleWorker

from src.local.embedded_redis import EmbeddedRedis
from src.store import RESULT_FILES_KEY, Store
from src.tasks import photos, results
from src.tasks.queues import SCORE_QUEUE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOUR_AGO = time.time() - 3600 * 2


def lay_out(store: Store, upload_dir: str, numbers: range) -> None:
    """A photo used by a task and a named result for each of `numbers`, all two hours old."""
    os.makedirs(results.results_dir(upload_dir), exist_ok=True)
    with store.redis.pipeline(transaction=False) as pipe:
        for number in numbers:
            digest = f"{number:064x}"
            path = photos.photo_path(upload_dir, digest)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            result = os.path.join(results.results_dir(upload_dir), f"{number:032x}.jpg")
            for file in (path, result):
                open(file, "wb").close()
                os.utime(file, (HOUR_AGO, HOUR_AGO))
            pipe.sadd(store.photo_key(digest), number + 1)
            pipe.sadd(RESULT_FILES_KEY, os.path.basename(result))
        pipe.execute()


def sweep_once(queue: Queue) -> float:
    """Run sweep_files as a job, its orphan scan's turn come; how long the job took, by RQ's
    own times."""
    queue.connection.delete("pt:turn:orphan_scan")  # our own private server
    job = queue.enqueue("src.jobs.sweep.sweep_files", result_ttl=60)
    SimpleWorker([queue], connection=queue.connection).work(burst=True, logging_level="WARNING")
    job.refresh()
    assert job.get_status() == "finished", job.get_status()
    assert job.return_value().startswith("0 expired, 0 orphan"), job.return_value()
    return (job.ended_at - job.started_at).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,10000", help="photos (and results) in use, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="sweeps timed for each count")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-sweep-")
    server = EmbeddedRedis(os.path.join(tmp, "valkey"), appendonly=False).start()
    try:
        upload_dir = os.path.join(tmp, "uploads")  # one for the run: a process reads its settings once
        os.environ.update(REDIS_URL=server.url, ORPHAN_GRACE="3600", UPLOAD_DIR=upload_dir)
        store = Store(redis.Redis.from_url(server.url), task_ttl=3600, lease=60)
        queue = Queue(SCORE_QUEUE, connection=store.redis)
        laid_out = 0
        for count in sorted(map(int, args.counts.split(","))):
            lay_out(store, upload_dir, range(laid_out, count))
            laid_out = count
            seconds = [sweep_once(queue) for _ in range(args.runs)]
            print(f"{count:7,} photos and results in use: sweep_files took "
                  f"{', '.join(f'{s:.3f}' for s in seconds)} s (median {statistics.median(seconds):.3f} s)", flush=True)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
