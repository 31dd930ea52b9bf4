"""Scoring throughput: many tasks waiting on the scorer, served by two workers.

Runs the service as `make run` does, as separate processes (`python -m src.local.launcher`: an
embedded valkey with its append-only file, $WORKERS workers, the dispatcher, the web
server), against the scorer simulator in a process of its own. Then, one after the other:

- 1 task that the scorer answers `wait` --rounds times (the baseline: ideally
  --rounds x SCORER_RETRY_DELAY plus a little);
- --batches tasks of that kind (e.g. 200 and 1000) posted at once by --clients threads;
- --ready tasks the scorer answers `ready` at once: end-to-end tasks per second.

A batch's time runs from its first POST until the last task finished (the task's own
`finished_at` in Redis, read by this script; polling GET for a thousand tasks would load the
web server it measures).

    make bench    # = .venv/bin/python bench/waiting_tasks.py
"""

from __future__ import annotations

import argparse
import collections
import io
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import redis
import requests
from PIL import Image

from src.local.embedded_redis import free_port
from src.local.launcher import _listening_on

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def photo(seed: int) -> bytes:
    """A small JPEG whose bytes differ with `seed`, so no two tasks dedupe."""
    image = Image.frombytes("RGB", (64, 48), random.Random(seed).randbytes(64 * 48 * 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


class Stack:
    """The simulator and `make run`'s launcher, as subprocesses, in a temporary folder."""

    def __init__(self, tmp: str, workers: int, delay: float):
        self.sim_port, self.port = free_port(), free_port()
        self.scorer_url = f"http://127.0.0.1:{self.sim_port}/api/"
        self.url = f"http://127.0.0.1:{self.port}/"
        quiet = subprocess.DEVNULL
        self.simulator = subprocess.Popen([sys.executable, "-m", "src.local.simulator", "--port", str(self.sim_port)],
                                          cwd=ROOT, stdout=quiet, stderr=quiet)
        env = {**os.environ, "PORT": str(self.port), "WORKERS": str(workers), "SCORER_URL": self.scorer_url,
               "SCORER_RETRY_DELAY": str(delay), "VAR_DIR": os.path.join(tmp, "var"),
               "UPLOAD_DIR": os.path.join(tmp, "uploads"),
               # one client sends every task: the per-user limits off (docs/fair-sharing.md)
               "USER_MAX_WAITING": "0", "USER_RATE": "0", "QUEUE_MAX": "0"}
        env.pop("REDIS_URL", None)
        self.log = open(os.path.join(tmp, "launcher.log"), "wb")
        self.launcher = subprocess.Popen([sys.executable, "-m", "src.local.launcher"], cwd=ROOT, env=env,
                                         stdout=self.log, stderr=subprocess.STDOUT)
        _listening_on(self.sim_port, "the simulator")(self.simulator)
        _listening_on(self.port, "the service", timeout=60)(self.launcher)
        with open(os.path.join(tmp, "var", "run", "redis.url")) as url_file:
            self.redis = redis.Redis.from_url(url_file.read().strip())

    def configure_scorer(self, **settings) -> None:
        requests.post(self.scorer_url + "_control", json=settings, timeout=5).raise_for_status()

    def stop(self) -> None:
        self.launcher.send_signal(signal.SIGTERM)
        self.launcher.wait(30)
        self.simulator.terminate()
        self.simulator.wait(10)
        self.log.close()


def run_batch(stack: Stack, count: int, first_seed: int, clients: int) -> tuple[float, float]:
    """Post `count` scoring tasks at once; return (seconds to post them all, seconds until the
    last one finished), both from the first POST."""
    local = threading.local()  # one keep-alive session per posting thread

    def post(seed: int) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        parts = {"name": (None, "Ann Lee"), "photo": ("f.jpg", photo(seed), "image/jpeg")}
        answer = local.session.post(stack.url, files=parts, timeout=60)
        assert answer.status_code == 202, answer.text
        return answer.json()["task"]

    photos = range(first_seed, first_seed + count)  # distinct: no two tasks dedupe
    started = time.time()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        tasks = list(pool.map(post, photos))
    posted = time.time() - started
    return posted, wait_finished(stack.redis, tasks) - started


def poll_gaps(stack: Stack) -> str:
    """The gaps between the scorer calls it has seen (of the one task sent so far)."""
    calls = requests.get(stack.scorer_url + "_calls", timeout=5).json()
    times = [call["time"] for call in calls]
    return ", ".join(f"{later - earlier:.3f}" for earlier, later in zip(times, times[1:]))


def wait_finished(client: redis.Redis, tasks: list[int], timeout: float = 600) -> float:
    """Wait until every task is ready; return when the last one finished (epoch seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        with client.pipeline(transaction=False) as pipe:
            for task in tasks:
                pipe.hmget(f"pt:task:{task}", "state", "finished_at")
            rows = pipe.execute()
        states = [state for state, _ in rows]
        if all(state in (b"ready", b"failed") for state in states):
            assert all(state == b"ready" for state in states), "a task failed"
            return max(float(finished) for _, finished in rows)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sum(s == b'ready' for s in states)} of {len(tasks)} ready after {timeout} s")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="200,1000", help="batch sizes, comma-separated")
    parser.add_argument("--ready", type=int, default=1000, help="tasks answered ready at once")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="wait answers per task")
    parser.add_argument("--delay", type=float, default=1.0, help="SCORER_RETRY_DELAY")
    parser.add_argument("--clients", type=int, default=16, help="threads posting at once")
    parser.add_argument("--runs", type=int, default=3, help="times the whole sequence runs")
    args = parser.parse_args()
    sizes = [1] + [int(n) for n in args.batches.split(",") if n]
    print(f"{args.workers} workers, SCORER_RETRY_DELAY={args.delay:g}, {args.rounds} wait rounds per task, "
          f"{args.clients} posting threads, {args.runs} runs")

    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(tmp, args.workers, args.delay)
        seeds = itertools.count(step=1)
        times: dict[str, list[float]] = collections.defaultdict(list)
        try:
            for run in range(args.runs):
                print(f"run {run + 1}:")
                stack.configure_scorer(wait_rounds=args.rounds)
                for count in sizes:
                    posted, done = run_batch(stack, count, next(seeds) * 100_000, args.clients)
                    times[f"{count} tasks x {args.rounds} waits"].append(done)
                    print(f"  {count:5d} tasks x {args.rounds} waits: all posted in {posted:6.2f} s, "
                          f"all ready in {done:6.2f} s")
                    if count == 1 and run == 0:
                        print(f"        its calls to the scorer came {poll_gaps(stack)} s apart")
                if args.ready:
                    stack.configure_scorer(wait_rounds=0)
                    posted, done = run_batch(stack, args.ready, next(seeds) * 100_000, args.clients)
                    times[f"{args.ready} tasks ready at once"].append(done)
                    print(f"  {args.ready:5d} tasks ready at once: all posted in {posted:6.2f} s, "
                          f"all ready in {done:6.2f} s = {args.ready / done:.0f} tasks/s")
        finally:
            stack.stop()
    print(f"medians of {args.runs} runs (all ready, from the first POST):")
    for what, values in times.items():
        print(f"  {what:28s} {statistics.median(values):6.2f} s")
    if args.ready:
        rate = args.ready / statistics.median(times[f"{args.ready} tasks ready at once"])
        print(f"  ready-at-once throughput     {rate:6.0f} tasks/s")


if __name__ == "__main__":
    main()
