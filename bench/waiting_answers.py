"""`Prefer: wait` against polling: how soon after a task's end its answer is in the client's hand.

Runs the service as `make run` does, as separate processes (`python -m src.local.launcher`:
embedded valkey, $WORKERS workers, the dispatcher, the web server), against the scorer
simulator in a process of its own, and one client, one task at a time:

- resizes of a 2 MP and a 12 MP JPEG to 800 px wide (each run a different width, so none
  dedupes), followed by: a POST with `Prefer: wait` (the result in one call), a POST then a GET
  with `Prefer: wait`, a POST then GET every 5 ms, and a POST then GET as `Retry-After` says.
  The lag is from the task's own end (`finished_at` in Redis, which is also the `updated_at`
  GET shows) to the answer that says `ready` being in the client's hand;
- scoring, the simulator answering `ready` at once: a POST with `Prefer: wait` against the
  scorer's own time (the same photo and name sent straight to the simulator by this client).

    make bench-wait    # = .venv/bin/python bench/waiting_answers.py --runs 30
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time

import requests
from PIL import Image, ImageFilter
from waiting_tasks import Stack, photo  # bench/ is this script's own folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIZES = {"2 MP": (1600, 1200), "12 MP": (4000, 3000)}
WIDTH = 800
POLL_EVERY = 0.005


def jpeg(size: tuple[int, int]) -> bytes:
    """A photo-like JPEG (gradients and grain, q90) of `size`."""
    small = Image.merge("RGB", [Image.radial_gradient("L"), Image.linear_gradient("L"),
                                Image.effect_noise((256, 256), 60)]).resize(size, Image.BICUBIC)
    grain = Image.effect_noise(size, 12).filter(ImageFilter.SMOOTH)
    image = Image.blend(small, Image.merge("RGB", [grain] * 3), 0.25)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class Client:
    def __init__(self, stack: Stack):
        self.stack = stack
        self.session = requests.Session()

    def post(self, files: dict, wait: int = 0) -> requests.Response:
        headers = {"Prefer": f"wait={wait}"} if wait else {}
        answer = self.session.post(self.stack.url, files=files, headers=headers, timeout=60)
        answer.raise_for_status()
        return answer

    def get(self, task_id: int, wait: int = 0) -> requests.Response:
        headers = {"Prefer": f"wait={wait}"} if wait else {}
        return self.session.get(self.stack.url, params={"task_id": task_id}, headers=headers, timeout=60)

    def finished_at(self, task_id: int) -> float:
        return float(self.stack.redis.hget(f"pt:task:{task_id}", "finished_at"))

    def follow(self, mode: str, files: dict) -> tuple[float, float]:
        """One task followed by `mode`: (lag from its end to `ready` in hand, seconds from the
        POST to then)."""
        started = time.time()
        if mode == "POST with wait":
            answer = self.post(files, wait=30)
        else:
            task_id = self.post(files).json()["task"]
            while True:
                answer = self.get(task_id, wait=30 if mode == "GET with wait" else 0)
                if answer.status_code != 202:
                    break
                time.sleep(POLL_EVERY if mode == "poll 5 ms" else float(answer.headers["Retry-After"]))
        in_hand = time.time()
        body = answer.json()
        assert body["status"] == "ready", body
        return in_hand - self.finished_at(body["task"]), in_hand - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def resizes(client: Client, runs: int, modes: list[str]) -> None:
    print(f"resize to ~{WIDTH} px wide, one client, {runs} tasks per mode, modes interleaved;"
          " lag = task's end -> ready in hand")
    print(f"  {'photo':6s} {'mode':16s} {'lag p50':>9s} {'lag p99':>9s} {'lag max':>9s} {'POST->ready p50':>16s}")
    for label, size in SIZES.items():
        data = jpeg(size)
        lags: dict[str, list[float]] = {mode: [] for mode in modes}
        totals: dict[str, list[float]] = {mode: [] for mode in modes}
        width = WIDTH
        for _ in range(runs):
            for mode in modes:
                width += 1  # a new task each time: dedupe would answer at once
                files = {"photo": ("p.jpg", data, "image/jpeg"), "width": (None, str(width))}
                lag, total = client.follow(mode, files)
                lags[mode].append(lag)
                totals[mode].append(total)
        for mode in modes:
            print(f"  {label:6s} {mode:16s} {1000 * percentile(lags[mode], .5):7.1f}ms "
                  f"{1000 * percentile(lags[mode], .99):7.1f}ms {1000 * max(lags[mode]):7.1f}ms "
                  f"{1000 * statistics.median(totals[mode]):14.1f}ms")


def scoring(client: Client, runs: int) -> None:
    scorer_times, post_times, lags = [], [], []
    spans: dict[str, list[float]] = {"POST sent -> task created": [], "task created -> scorer called": [],
                                      "scorer called -> task ended": []}
    for seed in range(runs):
        data = photo(10_000 + seed)
        started = time.perf_counter()
        direct = client.session.post(client.stack.scorer_url, timeout=10,
                                     files={"name": (None, "Ann Lee"), "photo": ("f.jpg", data, "image/jpeg")})
        scorer_times.append(time.perf_counter() - started)
        assert direct.status_code == 200, direct.text
        sent, started = time.time(), time.perf_counter()
        answer = client.post({"name": (None, "Ann Lee"), "photo": ("f.jpg", data, "image/jpeg")}, wait=30)
        post_times.append(time.perf_counter() - started)
        in_hand = time.time()
        assert answer.json()["status"] == "ready", answer.text
        task = client.stack.redis.hmget(f"pt:task:{answer.json()['task']}", "created_at", "finished_at")
        created, ended = (float(value) for value in task)
        called = requests.get(client.stack.scorer_url + "_calls", timeout=5).json()[-1]["time"]
        for span, seconds in zip(spans, (created - sent, called - created, ended - called)):
            spans[span].append(seconds)
        lags.append(in_hand - ended)
    scorer, post = statistics.median(scorer_times), statistics.median(post_times)
    print(f"scoring, the simulator answering ready at once, {runs} tasks:")
    print(f"  the scorer's own time (this client -> simulator) p50 {1000 * scorer:.1f} ms")
    print(f"  POST with Prefer: wait -> ready in hand        p50 {1000 * post:.1f} ms "
          f"(p99 {1000 * percentile(post_times, .99):.1f} ms) = scorer + {1000 * (post - scorer):.1f} ms")
    for span, values in spans.items():
        print(f"    {span:44s} p50 {1000 * statistics.median(values):.1f} ms")
    print(f"    task ended -> ready in hand (the lag)        p50 {1000 * statistics.median(lags):.1f} ms, "
          f"p99 {1000 * percentile(lags, .99):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="tasks per photo size and mode")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modes", default="POST with wait,GET with wait,poll 5 ms,Retry-After",
                        help="comma-separated")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(tmp, args.workers, delay=1.0)
        try:
            client = Client(stack)
            client.follow("poll 5 ms", {"photo": ("p.jpg", jpeg((640, 480)), "image/jpeg"),
                                        "width": (None, "100")})  # warm-up: workers' first fork
            resizes(client, args.runs, args.modes.split(","))
            scoring(client, args.runs)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
