"""One user floods the service while another uses it (docs/fair-sharing.md; figures in
docs/performance.md, "Sharing the service fairly").

The service as `make run` runs it (web, dispatcher and WORKERS workers as processes, a private
valkey, the scorer simulator), with API keys for users a and b and the default limits:

1. **b alone**: b sends one task a second (resizes, then scoring runs); b's latency, POST to
   ready, p50 and p99.
2. **the flood**: a sends `--flood` tasks at 32 connections (resizes, then scoring runs against
   a slow simulator: 0.5 s a call, one `wait` round, 64 threads) while b sends one task a
   second, as before: b's latency during the flood, and a's answers by code.
3. **the limiter's cost**: the claim script with the limits against the same script with every
   limit off, called one at a time from this process: CPU per claim here (the web's side) and
   in valkey (its INFO), medians of rounds.
4. **POST throughput**: 32 connections of new tasks from many users (so no limit refuses), with
   the limits on and off, the web restarted between; POSTs a second, medians of rounds.

    make bench-flood   # = .venv/bin/python bench/flood.py   (--flood 5000 --b-tasks 10)
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import redis
import requests
import waitress
from PIL import Image

from harness import ROOT, Client, wait_until
from src.local.embedded_redis import EmbeddedRedis, free_port
from src.local.processes import spawn
from src.local.simulator import create_simulator
from src.store import Store
from src.tasks.dedupe import dedupe_key

KEYS = "a:ka,b:kb," + ",".join(f"u{i}:k{i}" for i in range(64))
OFF = {"USER_MAX_WAITING": "0", "USER_RATE": "0", "USER_MAX_STORED_BYTES": "0", "QUEUE_MAX": "0",
       "MIN_FREE_BYTES": "0"}


def gradient(size=(2000, 1500), seed=0) -> bytes:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.putpixel((seed % size[0], 0), (seed % 256, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class Stack:
    """valkey, the simulator, the dispatcher and workers; the web, restartable with settings."""

    def __init__(self, tmp: str, workers: int):
        self.tmp = tmp
        self.redis = EmbeddedRedis(os.path.join(tmp, "valkey"), appendonly=False).start()
        # The simulator with more threads than its default 8: a's flood makes up to 16 calls per
        # worker at once, and a scorer that queued them itself would measure its queue, not ours.
        self.scorer = create_simulator()
        self.server = waitress.create_server(self.scorer, host="127.0.0.1", port=0, threads=64,
                                             ident="scorer-simulator")
        threading.Thread(target=self._serve_scorer, daemon=True).start()
        scorer_url = f"http://127.0.0.1:{self.server.effective_port}/api/"
        self.env = {**os.environ, "REDIS_URL": self.redis.url, "SCORER_URL": scorer_url, "API_KEYS": KEYS,
                    "UPLOAD_DIR": os.path.join(tmp, "uploads"), "SCORER_RETRY_DELAY": "0.5",
                    "PYTHONUNBUFFERED": "1"}
        self.log = open(os.path.join(tmp, "processes.log"), "ab")
        modules = ["src.runners.dispatcher"] + ["src.runners.worker"] * workers
        self.processes = [self._spawn(["-m", module], self.env) for module in modules]
        self.web = None
        self.client = None

    def _serve_scorer(self) -> None:
        try:
            self.server.run()
        except OSError:
            pass  # closing the sockets under a running select() is how waitress stops

    def _spawn(self, args, env) -> subprocess.Popen:
        return spawn([sys.executable, *args], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def start_web(self, **settings) -> Client:
        self.stop_web()
        port = free_port()
        self.web = self._spawn(["wsgi.py"], {**self.env, "PORT": str(port), **settings})
        self.client = Client(f"http://127.0.0.1:{port}/")
        assert wait_until(lambda: _answers(self.client), timeout=20), "the web did not start"
        return self.client

    def stop_web(self) -> None:
        if self.web is not None:
            self.web.terminate()
            self.web.wait()

    def stop(self) -> None:
        self.stop_web()
        for process in self.processes:
            process.kill()
            process.wait()
        self.server.close()
        self.redis.stop()


def _answers(client: Client) -> bool:
    try:
        return client.fetch("/healthz").status_code == 200
    except requests.RequestException:
        return False


def headers(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def b_latency(client: Client, kind: str, count: int, seed: int) -> list[float]:
    """b sends `count` tasks, one a second; each one's seconds from POST to ready."""
    latencies = []
    for i in range(count):
        started = time.monotonic()
        photo = gradient(seed=seed + i)
        fields = {"name": "Bo Ek"} if kind == "score" else {"width": 800}
        answer = client.post(photo, headers=headers("kb"), **fields)
        assert answer.status_code == 202, answer.text
        task = answer.json()["task"]
        while client.get(task, headers("kb")).status_code == 202:
            time.sleep(0.02)
        latencies.append(time.monotonic() - started)
        time.sleep(max(0.0, 1 - (time.monotonic() - started)))
    return latencies


def flood(client: Client, kind: str, count: int, seed: int) -> Counter:
    """a sends `count` tasks at 32 connections; its answers by code."""
    photo = gradient((1200, 900), seed)
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))

    def send(i: int) -> str:
        fields = {"name": f"Ann {i}"} if kind == "score" else {"width": 100 + i % 3000, "height": 100 + i // 3000}
        parts = {key: (None, str(value)) for key, value in fields.items()}
        parts["photo"] = ("a.jpg", photo, "image/jpeg")
        answer = session.post(client.url, files=parts, headers=headers("ka"), timeout=30)
        return str(answer.status_code) if answer.status_code < 400 else answer.json()["error"]["code"]

    with ThreadPoolExecutor(32) as pool:
        return Counter(pool.map(send, range(count)))


def resize_seconds(client: Client) -> tuple[float, float]:
    """The resize jobs' total seconds and count so far, from /metrics."""
    numbers = {}
    for line in client.fetch("/metrics").text.splitlines():
        for part in ("sum", "count"):
            if line.startswith(f"photo_tasks_resize_duration_seconds_{part} "):
                numbers[part] = float(line.split()[-1])
    return numbers.get("sum", 0.0), numbers.get("count", 0.0)


def drain(stack: Stack, timeout: float = 600) -> None:
    """Wait until no task waits (a's flood is worked off), so the next phase starts clean."""
    conn = redis.Redis.from_url(stack.redis.url)
    wait_until(lambda: int(conn.get("pt:waiting") or 0) == 0, timeout=timeout, interval=0.5)


def percentiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {statistics.median(values):.2f} s, p99 {cuts[98]:.2f} s"


def claim_cost(url: str, limits: tuple, rounds: int, claims: int) -> tuple[float, float]:
    """Median CPU µs per claim: in this process, and in valkey."""
    conn = redis.Redis.from_url(url, db=1)  # not the service's database
    store = Store(conn, 60)
    here, server = [], []
    for r in range(rounds):
        conn.flushdb()
        before_cpu, before_server = time.process_time(), _server_cpu(conn)
        for i in range(claims):
            store.claim(dedupe_key(f"u{i % 64}", "resize", "{}", f"{r}-{i}"), f"{i:064x}", owner=f"u{i % 64}",
                        photo_bytes=50_000, limits=limits, kind="resize")
        here.append((time.process_time() - before_cpu) / claims * 1e6)
        server.append((_server_cpu(conn) - before_server) / claims * 1e6)
    conn.flushdb()
    return statistics.median(here), statistics.median(server)


def _server_cpu(conn: redis.Redis) -> float:
    info = conn.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def throughput(stack: Stack, settings: dict, posts: int, seed: int) -> float:
    """POSTs a second of new resizes from 64 users at 32 connections."""
    client = stack.start_web(**settings)
    photo = gradient((640, 480), seed)
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))

    def send(i: int) -> int:
        parts = {"width": (None, str(10 + i % 600)), "height": (None, str(10 + i // 600)),
                 "photo": ("p.jpg", photo, "image/jpeg")}
        return session.post(client.url, files=parts, headers=headers(f"k{i % 64}"), timeout=30).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        codes = Counter(pool.map(send, range(posts)))
    assert set(codes) <= {200, 202}, codes  # nothing refused
    return posts / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flood", type=int, default=5000, help="tasks a sends (half resizes, half scoring)")
    parser.add_argument("--b-tasks", type=int, default=10, help="tasks b sends per phase and kind")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--posts", type=int, default=1000, help="POSTs per throughput round")
    parser.add_argument("--parts", default="flood,cost,throughput", help="which parts to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(tmp, args.workers)
        try:
            run(stack, args)
        finally:
            stack.stop()


def run(stack: Stack, args) -> None:
    parts = args.parts.split(",")
    client = stack.start_web()
    stack.scorer.configure(wait_rounds=1)
    for kind in ("resize", "score") if "flood" in parts else ():
        if kind == "score":
            stack.scorer.configure(always="slow", slow_seconds=0.5)
        alone = b_latency(client, kind, args.b_tasks, seed=1000)
        before = resize_seconds(client)
        with ThreadPoolExecutor(1) as pool:
            flooding = pool.submit(flood, client, kind, args.flood // 2, seed=7 if kind == "resize" else 8)
            time.sleep(1)
            during = b_latency(client, kind, args.b_tasks, seed=2000)
            answers = flooding.result()
        after = resize_seconds(client)
        job = (after[0] - before[0]) / max(1, after[1] - before[1])
        print(f"{kind}: b alone {percentiles(alone)}; b during a's flood {percentiles(during)}; "
              f"a's {args.flood // 2} answers: {dict(sorted(answers.items()))}"
              + (f"; one resize job took {job:.2f} s on average meanwhile" if kind == "resize" else ""),
              flush=True)
        stack.scorer.configure(always=None)
        drain(stack)
    stack.stop_web()
    on, off = (1000, 20.0, 100, 5 * 1024 ** 3, 50_000), (0, 0, 0, 0, 0)
    if "cost" in parts:
        cost(stack, on, off, args.rounds)
    if "throughput" in parts:
        post_rates(stack, args)


def cost(stack: Stack, on: tuple, off: tuple, rounds: int) -> None:
    """The claim with and without the limits, rounds taken in turns (the machine drifts)."""
    runs = {"on": [], "off": []}
    for _ in range(rounds):
        runs["on"].append(claim_cost(stack.redis.url, on, 1, 2000))
        runs["off"].append(claim_cost(stack.redis.url, off, 1, 2000))
    cost_on, cost_off = ([statistics.median(part) for part in zip(*runs[mode])] for mode in ("on", "off"))
    print(f"claim CPU per POST, limits on: {cost_on[0]:.1f} µs here + {cost_on[1]:.1f} µs in valkey; "
          f"off: {cost_off[0]:.1f} + {cost_off[1]:.1f} µs; the limits cost "
          f"{cost_on[0] + cost_on[1] - cost_off[0] - cost_off[1]:.1f} µs", flush=True)


def post_rates(stack: Stack, args) -> None:
    rates = {"on": [], "off": []}
    for r in range(args.rounds):
        for mode, settings in (("on", {"USER_RATE": "100000", "USER_BURST": "100000"}), ("off", OFF)):
            rates[mode].append(throughput(stack, settings, args.posts, seed=r * 2 + (mode == "off")))
    on_rate, off_rate = statistics.median(rates["on"]), statistics.median(rates["off"])
    print(f"POST throughput (32 connections, {args.posts} new tasks, median of {args.rounds}): limits on "
          f"{on_rate:.0f}/s, off {off_rate:.0f}/s, ratio {on_rate / off_rate:.3f}", flush=True)


if __name__ == "__main__":
    main()
