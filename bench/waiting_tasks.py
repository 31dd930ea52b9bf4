"""How long tasks that wait on the scorer take when many share a few workers.

Starts a private valkey-server, the scorer simulator (every task answered `wait` for
--rounds rounds) and the service with --workers RQ workers, then, --runs times over: one
task alone (the baseline), then --tasks tasks at once. Prints each run and the medians.
Waiting never holds a worker, so the batch should take about as long as the single task.

    make bench            # or: .venv/bin/python bench/waiting_tasks.py --tasks 24 --workers 2
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from harness import Service, make_photo  # noqa: E402
from src.embedded_redis import EmbeddedRedis  # noqa: E402
from src.simulator import serve  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the simulator's access log


def run_batch(service: Service, photos: list[bytes]) -> float:
    """Seconds from the first POST until every task answers ready."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda photo: service.post(photo, name="Ann Lee"), photos))
        done = list(pool.map(lambda answer: service.wait_done(answer.json()["task"], timeout=300), answers))
    elapsed = time.monotonic() - started
    assert all(answer.json()["status"] == "ready" for answer in done), "a task did not finish ready"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="wait answers per task")
    parser.add_argument("--delay", type=float, default=2.0, help="SCORER_RETRY_DELAY")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        redis_server = EmbeddedRedis(os.path.join(tmp, "valkey"), appendonly=False).start()
        scorer, scorer_url = serve()
        scorer.app.configure(wait_rounds=args.rounds)
        os.makedirs(os.path.join(tmp, "uploads"))
        service = Service({"REDIS_URL": redis_server.url, "SCORER_URL": scorer_url,
                           "UPLOAD_DIR": os.path.join(tmp, "uploads"),
                           "SCORER_RETRY_DELAY": str(args.delay)})
        service.start_workers(args.workers)
        try:
            singles, batches = [], []
            for run in range(args.runs):
                seed = run * (args.tasks + 1)
                singles.append(run_batch(service, [make_photo(seed)]))
                batches.append(run_batch(service, [make_photo(seed + 1 + i) for i in range(args.tasks)]))
                print(f"run {run + 1}: 1 task {singles[-1]:.2f} s, {args.tasks} tasks {batches[-1]:.2f} s")
        finally:
            service.stop()
            scorer.shutdown()
            redis_server.stop()

    single, batch = statistics.median(singles), statistics.median(batches)
    print(f"\n{args.tasks} tasks x {args.rounds} wait rounds, SCORER_RETRY_DELAY={args.delay:g}, "
          f"{args.workers} workers, median of {args.runs} runs:")
    print(f"  1 task alone:   {single:.2f} s")
    print(f"  {args.tasks} tasks at once: {batch:.2f} s  ({batch / single:.2f}x the single task)")


if __name__ == "__main__":
    main()
