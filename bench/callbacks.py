"""Callback latency: from a task's end to the receiver having its callback, at a steady rate.

Runs the service as `make run` does (`python -m src.local.launcher`: embedded valkey,
$WORKERS workers, the dispatcher, the callback deliverer, the web server) against the scorer
simulator in a process of its own, answering `ready` at once. A receiver (a threaded HTTP
server on loopback, in a process of its own) answers 204 and notes when each callback came. Scoring
tasks are posted at --rate a second for --seconds, each with `callback_url`; a callback's
latency runs from its task's `finished_at` (in Redis, written by the script that ends the task)
to the moment the receiver has the whole request.

    make bench-callbacks    # = .venv/bin/python bench/callbacks.py
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.waiting_tasks import Stack, photo, wait_finished
from harness import Receiver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SECRET = "whsec_" + base64.b64encode(b"bench-callbacks-secret-32-bytes!").decode()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def serve_receiver(pipe) -> None:
    """The receiver, in a process of its own (so the posting threads do not slow it): sends
    its URL, then, when asked, when the first callback of each task came."""
    receiver = Receiver()
    pipe.send(receiver.plan("/hook", 204))
    pipe.recv()
    first: dict[int, float] = {}
    for call in receiver.calls("/hook"):
        first.setdefault(json.loads(call["body"])["data"]["task"], call["at"])
    pipe.send((first, len(receiver.calls("/hook"))))
    receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="tasks posted a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8, help="threads posting")
    args = parser.parse_args()

    os.environ.update(WEBHOOK_SECRET=SECRET, CALLBACK_ALLOW_PRIVATE="1")
    ours, theirs = multiprocessing.Pipe()
    receiver = multiprocessing.Process(target=serve_receiver, args=(theirs,), daemon=True)
    receiver.start()
    hook = ours.recv()
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

            with ThreadPoolExecutor(max_workers=args.clients) as pool:
                tasks = list(pool.map(post, range(count)))
            posted = time.monotonic() - start  # from the first POST's planned time
            wait_finished(stack.redis, tasks)
            with stack.redis.pipeline(transaction=False) as pipe:
                for task in tasks:
                    pipe.hget(f"pt:task:{task}", "finished_at")
                finished = dict(zip(tasks, (float(value) for value in pipe.execute())))
            deadline = time.monotonic() + 120
            while stack.redis.zcard("pt:deliveries") and time.monotonic() < deadline:
                time.sleep(0.2)  # until every callback is delivered
            ours.send("done")
            first, received = ours.recv()
            latencies = [(first[task] - finished[task]) * 1000 for task in tasks]
        finally:
            stack.stop()
            receiver.terminate()
    print(f"{count} scoring tasks with callback_url posted in {posted:.1f} s ({count / posted:.0f}/s), "
          f"{args.workers} workers")
    print(f"task end -> receiver has the callback: p50 {statistics.median(latencies):.1f} ms, "
          f"p90 {percentile(latencies, 0.9):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
          f"max {max(latencies):.1f} ms")
    print(f"callbacks received: {received} for {count} tasks")


if __name__ == "__main__":
    main()
