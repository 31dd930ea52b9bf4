"""Callback latency: from a task's end to the receiver having its callback, at a steady rate.

Runs the service as `make run` does (`python -m src.local.launcher`: embedded valkey,
$WORKERS workers, the dispatcher, the callback deliverer, the web server) against the scorer
simulator in a process of its own, answering `ready` at once. A receiver (a threaded HTTP
server on loopback, in this process) answers 204 and notes when each callback came. Scoring
tasks are posted at --rate a second for --seconds, each with `callback_url`; a callback's
latency runs from its task's `finished_at` (in Redis, written by the script that ends the task)
to the moment the receiver has the whole request.

    make bench-callbacks    # = .venv/bin/python bench/callbacks.py
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from bench.waiting_tasks import Stack, photo, wait_finished  # noqa: E402
from harness import Receiver  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"bench-callbacks-secret-32-bytes!").decode()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="tasks posted a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8, help="threads posting")
    args = parser.parse_args()

    os.environ.update(WEBHOOK_SECRET=SECRET, CALLBACK_ALLOW_PRIVATE="1")
    receiver = Receiver()
    hook = receiver.plan("/hook", 204)
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(tmp, args.workers, delay=1.0)
        try:
            count = int(args.rate * args.seconds)
            local = threading.local()
            start = time.monotonic() + 0.5

            def post(number: int) -> int:
                time.sleep(max(0.0, start + number / args.rate - time.monotonic()))  # a steady rate
                if not hasattr(local, "session"):
                    local.session = requests.Session()
                files = {"name": (None, "Ann Lee"), "callback_url": (None, hook),
                         "photo": ("f.jpg", photo(10_000 + number), "image/jpeg")}
                answer = local.session.post(stack.url, files=files, timeout=60)
                assert answer.status_code == 202, answer.text
                return answer.json()["task"]

            began = time.time()
            with ThreadPoolExecutor(max_workers=args.clients) as pool:
                tasks = list(pool.map(post, range(count)))
            posted = time.time() - began
            wait_finished(stack.redis, tasks)
            receiver.wait_calls("/hook", count, timeout=120)
            with stack.redis.pipeline(transaction=False) as pipe:
                for task in tasks:
                    pipe.hget(f"pt:task:{task}", "finished_at")
                finished = dict(zip(tasks, (float(value) for value in pipe.execute())))
            first = {}
            for call in receiver.calls("/hook"):
                task = json.loads(call["body"])["data"]["task"]
                first.setdefault(task, call["at"])
            latencies = [(first[task] - finished[task]) * 1000 for task in tasks]
        finally:
            stack.stop()
            receiver.stop()
    print(f"{count} scoring tasks with callback_url posted in {posted:.1f} s ({count / posted:.0f}/s), "
          f"{args.workers} workers")
    print(f"task end -> receiver has the callback: p50 {statistics.median(latencies):.1f} ms, "
          f"p90 {percentile(latencies, 0.9):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
          f"max {max(latencies):.1f} ms")
    print(f"callbacks received: {len(receiver.calls('/hook'))} for {count} tasks")


if __name__ == "__main__":
    main()
