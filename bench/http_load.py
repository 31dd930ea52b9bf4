"""HTTP throughput of the web process, next to two bare apps on the same waitress.

The service runs as `make run` runs it (`python -m src.local.launcher` in a temporary folder: an
embedded valkey with its append-only file, the bundled scorer simulator, $WORKERS workers,
the dispatcher, and the web process `python wsgi.py`), so every task it creates is scored
and the queue drains. The baselines run as processes of their own on the service's waitress
configuration (`src.web.server.create_server`):

- **hello**: a WSGI app that answers "Hello, world!";
- **parse+save**: werkzeug parses the same multipart body and saves the photo to a file;
- **one read**: a WSGI app that reads the task's hash with redis-py (HGETALL, from the
  service's valkey) and answers it as JSON: the floor of any GET that asks Redis.

wrk (bench/http_load.lua) drives each with --connections keep-alive connections for --seconds,
over loopback, three scenarios:

- **POST new**: a ~200 KB JPEG for scoring, a different photo each request (a JPEG comment
  segment holds a per-request tag), against parse+save;
- **POST same**: the photo of a ready task again (a dedupe hit: 200 ready), against
  parse+save;
- **GET**: `/?task_id=N` of a ready task, against hello, and against one read.

Runs are interleaved (service, baseline, baseline, service, ...), each after the queue has
drained, and every answer is checked (its status code and JSON "status" word). The table
gives the median requests per second of --rounds runs, the ratio of the medians, and the
median CPU time per request of the answering process (the service's web process, or the
baseline). A POST new run also tells the CPU time per request of the rest of the service
(workers, simulator, valkey, dispatcher; until the tasks it created are scored), which
shares the machine with the web process.

With --pin, the answering process (the web process, or the baseline) has CPU 0 to itself,
and wrk and the rest of the service share the others: the comparison is then of the web
process's own cost, which the scheduler's placement of a dozen processes on a few cores
otherwise blurs (unpinned, hello alone can vary threefold between runs on two cores).

    make bench-http    # = .venv/bin/python bench/http_load.py   (add --pin: see above)
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import secrets
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid

import psutil
import redis
import requests
from PIL import Image
from rq import Queue
from werkzeug.wrappers import Request, Response

from src.local.embedded_redis import free_port
from src.local.launcher import _listening_on
from src.settings import Settings
from src.tasks.queues import QUEUES
from src.web.server import create_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LUA = os.path.join(ROOT, "bench", "http_load.lua")
TAG_LENGTH = 22  # bench/http_load.lua: 8 characters of run, 2 of thread, 12 of counter
PHOTO_SIZE = (960, 720)  # with the grain below, about 200 KB at quality 85


# --- the request bodies ------------------------------------------------------------------
def photo() -> bytes:
    """Ramps and grain, a photograph's weight on the wire."""
    ramp = Image.linear_gradient("L").resize(PHOTO_SIZE)
    image = Image.merge("RGB", (ramp, Image.effect_noise(PHOTO_SIZE, 16), ramp.transpose(Image.Transpose.ROTATE_180)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


class Body:
    """A multipart request (by default a scoring request: a name and a photo; bench/peers.py
    gives other fields) whose photo carries a JPEG comment segment (COM, right
    after SOI) of TAG_LENGTH bytes: prefix + tag + suffix. A different tag is a different
    photo to the service, the same picture to anyone who looks."""

    def __init__(self, jpeg: bytes, folder: str, fields: dict[str, str] | None = None, file_field: str = "photo",
                 filename: str = "face.jpg"):
        boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={boundary}"
        fields = {"name": "Ann Lee"} if fields is None else fields  # a scoring request's
        head = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                       for name, value in fields.items())
        head = (head + f"--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
        self.prefix = head + jpeg[:2] + b"\xff\xfe" + struct.pack(">H", 2 + TAG_LENGTH)
        self.suffix = jpeg[2:] + f"\r\n--{boundary}--\r\n".encode()
        self.prefix_file, self.suffix_file = os.path.join(folder, "prefix"), os.path.join(folder, "suffix")
        for path, data in ((self.prefix_file, self.prefix), (self.suffix_file, self.suffix)):
            with open(path, "wb") as file:
                file.write(data)

    def with_tag(self, tag: str) -> bytes:
        assert len(tag) == TAG_LENGTH
        return self.prefix + tag.encode() + self.suffix

    def wrk_args(self, mode: str, tag: str) -> list[str]:
        return [mode, self.prefix_file, self.suffix_file, self.content_type, tag]


# --- the baselines, each served in a process of its own ----------------------------------
def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


def parse_and_save(folder: str):
    @Request.application
    def app(request):
        request.files["photo"].save(os.path.join(folder, uuid.uuid4().hex))
        return Response('{"status": "saved"}', content_type="application/json")

    return app


def read_task(redis_url: str, key: str):
    conn = redis.Redis.from_url(redis_url)

    def app(environ, start_response):
        task = {name.decode(): value.decode() for name, value in conn.hgetall(key).items()}
        body = json.dumps({"status": task["state"], "result": json.loads(task["result"])}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def serve_baseline(args) -> None:
    apps = {"hello": lambda: hello, "upload": lambda: parse_and_save(args.folder),
            "read": lambda: read_task(args.redis_url, args.key)}
    app = apps[args.serve]()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is 9", on every burst
    create_server(app, Settings(), port=args.port).run()


class Baseline:
    def __init__(self, kind: str, name: str, *options: str):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(self.port),
                                         *options], cwd=ROOT)
        _listening_on(self.port, f"the {kind} baseline")(self.process)
        self.server = psutil.Process(self.process.pid)
        pin(self.server, ANSWERING_CPUS)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Service:
    """`make run`'s launcher, with its own folders, port and embedded valkey."""

    def __init__(self, tmp: str, workers: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "PORT": str(self.port), "WORKERS": str(workers),
               "VAR_DIR": os.path.join(tmp, "var"), "UPLOAD_DIR": os.path.join(tmp, "uploads"),
               # one client sends every task: the per-user limits off (docs/fair-sharing.md)
               "USER_MAX_WAITING": "0", "USER_RATE": "0", "QUEUE_MAX": "0"}
        for name in ("REDIS_URL", "SCORER_URL", "API_KEYS", "TRUSTED_PROXIES"):
            env.pop(name, None)
        self.log = open(os.path.join(tmp, "launcher.log"), "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "src.local.launcher"], cwd=ROOT, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        _listening_on(self.port, "the launcher", timeout=60)(self.process)
        self.server = next(child for child in psutil.Process(self.process.pid).children()
                           if child.cmdline()[-1:] == ["wsgi.py"])  # the web process
        with open(os.path.join(tmp, "var", "run", "redis.url")) as url_file:
            self.redis_url = url_file.read().strip()
        self.redis = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + 30
        while requests.get(self.url + "readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "no worker came up"
            time.sleep(0.2)

    def post(self, body: bytes, content_type: str) -> dict:
        answer = requests.post(self.url, data=body, headers={"Content-Type": content_type}, timeout=10)
        assert answer.status_code in (200, 202), answer.text
        return answer.json()

    def wait_ready(self, task_id: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while requests.get(self.url, params={"task_id": task_id}, timeout=5).json()["status"] != "ready":
            assert time.monotonic() < deadline, f"task {task_id} not ready within {timeout} s"
            time.sleep(0.1)

    def tasks_created(self) -> int:
        return int(self.redis.get("pt:task_seq") or 0)

    def job_side_cpu(self) -> dict[int, tuple[str, float]]:
        """CPU seconds so far of each of the service's other processes (valkey, simulator,
        workers, dispatcher, launcher), by process id, with the kind of process."""
        seconds = {}
        for process in [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]:
            if process.pid != self.server.pid:
                try:
                    seconds[process.pid] = (_kind(process.cmdline()), cpu_seconds(process))
                except psutil.NoSuchProcess:
                    pass
        return seconds

    def drain(self, timeout: float = 120) -> float:
        """Wait until no job waits on a queue; return how long that took."""
        started = time.monotonic()
        while any(Queue(name, connection=self.redis).count for name in QUEUES):
            assert time.monotonic() - started < timeout, "the queues did not drain"
            time.sleep(0.1)
        return time.monotonic() - started

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        self.log.close()


# --- wrk -----------------------------------------------------------------------------------
# --- where processes run ------------------------------------------------------------------
ANSWERING_CPUS: set[int] | None = None  # with --pin: {0}
OTHER_CPUS: set[int] | None = None  # with --pin: every other CPU


def pin(process: psutil.Process, cpus: set[int] | None) -> None:
    """Every thread of `process` (affinity is per thread; new ones inherit it) onto `cpus`."""
    if cpus is not None:
        for thread in process.threads():
            os.sched_setaffinity(thread.id, cpus)


def pin_service(service: Service) -> None:
    launcher = psutil.Process(service.process.pid)
    for process in [launcher, *launcher.children(recursive=True)]:
        pin(process, ANSWERING_CPUS if process.pid == service.server.pid else OTHER_CPUS)


def _kind(cmdline: list[str]) -> str:
    """What a process of the service is, from its command line."""
    words = " ".join(cmdline)
    kinds = ("valkey", "simulator", "worker", "dispatcher", "launcher")
    return next((kind for kind in kinds if kind in words), "other")


def job_side_note(before: dict, after: dict, requests: int) -> str:
    """The rest of the service's CPU per request, in all and by kind of process."""
    by_kind: dict[str, float] = {}
    for pid in after.keys() & before.keys():
        kind, seconds = after[pid]
        by_kind[kind] = by_kind.get(kind, 0.0) + seconds - before[pid][1]
    parts = ", ".join(f"{kind} {seconds / requests * 1e6:.0f}" for kind, seconds in sorted(by_kind.items()))
    return f"the rest of the service: {sum(by_kind.values()) / requests * 1e6:.0f} us/request ({parts})"


def wrk(url: str, seconds: int, connections: int, args: list[str]) -> dict:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", LUA, url, "--", *args]
    on_other_cpus = (lambda: os.sched_setaffinity(0, OTHER_CPUS)) if OTHER_CPUS else None
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True,
                          preexec_fn=on_other_cpus)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["rate"] = result["requests"] / result["seconds"]
    return result


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class Scenario:
    """One kind of request, to the service and to its baseline. `expected`: the answers
    ("<code> <status word>") each must give, every time. Besides the rate, each run notes
    the CPU time the answering process (the service's web process, or the baseline's) spent
    per request."""

    def __init__(self, title: str, service: Service, service_url: str, service_args, service_expected: str,
                 baseline: Baseline, baseline_args, baseline_expected: str, target: float | None = None):
        self.title, self.baseline, self.target = title, baseline.name, target
        self.sides = {"service": (service.server, service_url, service_args, service_expected),
                      "baseline": (baseline.server, baseline.url, baseline_args, baseline_expected)}
        self.rates: dict[str, list[float]] = {"service": [], "baseline": []}
        self.cpu: dict[str, list[float]] = {"service": [], "baseline": []}

    def run(self, side: str, seconds: int, connections: int, keep: bool = True) -> dict:
        server, url, args, expected = self.sides[side]
        cpu_before = cpu_seconds(server)
        result = wrk(url, seconds, connections, args() if callable(args) else args)
        result["cpu_us"] = (cpu_seconds(server) - cpu_before) / result["requests"] * 1e6
        wrong = {answer: count for answer, count in result["answers"].items() if answer != expected}
        if wrong or result["socket_errors"]:
            raise RuntimeError(f"{self.title}, {side}: expected only '{expected}', got {result['answers']}, "
                               f"{result['socket_errors']} socket errors")
        if keep:
            self.rates[side].append(result["rate"])
            self.cpu[side].append(result["cpu_us"])
        return result

    def medians(self, side: str) -> tuple[float, float]:
        """The median rate (requests per second) and CPU per request (µs) of one side."""
        return statistics.median(self.rates[side]), statistics.median(self.cpu[side])


def stop_all(started: list, tmp: str) -> None:
    """Stop what a benchmark started, last first, and remove its folder."""
    for process in reversed(started):
        process.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def run_tag() -> str:
    return secrets.token_hex(4)  # 8 characters: each wrk run's tags differ from all others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each scenario on each side")
    parser.add_argument("--seconds", type=int, default=3, help="length of one run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="the service's WORKERS")
    parser.add_argument("--pin", action="store_true", help="the answering process alone on CPU 0, the rest elsewhere")
    for hidden in ("--serve", "--port", "--folder", "--redis-url", "--key"):  # a baseline's process
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve_baseline(args)
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: `make bench-http` installs it (apt-get install wrk)")
    if args.pin:
        global ANSWERING_CPUS, OTHER_CPUS
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            sys.exit("--pin needs at least 2 CPUs")
        ANSWERING_CPUS, OTHER_CPUS = {cpus[0]}, set(cpus[1:])

    tmp = tempfile.mkdtemp(prefix="bench-http-")
    started = []
    try:
        service = Service(tmp, args.workers)
        started.append(service)
        pin_service(service)
        os.makedirs(os.path.join(tmp, "upload"))
        hello_app = Baseline("hello", "hello")
        upload_app = Baseline("upload", "parse+save", "--folder", os.path.join(tmp, "upload"))
        started += [hello_app, upload_app]
        body = Body(photo(), tmp)
        print(f"photo {len(body.with_tag('x' * TAG_LENGTH)):,} bytes on the wire; {args.connections} connections, "
              f"{args.rounds} rounds of {args.seconds} s; service with {args.workers} workers"
              + (f"; answering process on CPU {ANSWERING_CPUS}, the rest on {OTHER_CPUS}" if args.pin else ""))

        # The service takes two tags as two photos, and answers the same one from its task.
        first, second = (service.post(body.with_tag(tag * TAG_LENGTH), body.content_type) for tag in "ab")
        assert first["status"] == second["status"] == "received" and first["task"] != second["task"], (first, second)
        same_tag = "s" * TAG_LENGTH
        ready_task = service.post(body.with_tag(same_tag), body.content_type)["task"]
        service.wait_ready(ready_task)
        task_url = f"{service.url}?task_id={ready_task}"
        read_app = Baseline("read", "one read", "--redis-url", service.redis_url, "--key", f"pt:task:{ready_task}")
        started.append(read_app)

        scenarios = [
            Scenario("POST new photo", service, service.url, lambda: body.wrk_args("new", run_tag()), "202 received",
                     upload_app, lambda: body.wrk_args("new", run_tag()), "200 saved", 0.6),
            Scenario("POST same photo (dedupe)", service, service.url, body.wrk_args("same", same_tag), "200 ready",
                     upload_app, body.wrk_args("same", same_tag), "200 saved", 0.8),
            Scenario("GET /?task_id=N", service, task_url, ["get"], "200 ready", hello_app, ["get"], "200 -", 0.5),
            Scenario("GET /?task_id=N", service, task_url, ["get"], "200 ready", read_app, ["get"], "200 ready"),
        ]
        for scenario in scenarios:  # warm-up, not counted
            for side in ("service", "baseline"):
                service.drain()
                scenario.run(side, 1, args.connections, keep=False)
        for round_number in range(args.rounds):
            order = ("service", "baseline") if round_number % 2 == 0 else ("baseline", "service")
            for scenario in scenarios:
                for side in order:
                    drained = service.drain()
                    created, job_side = service.tasks_created(), service.job_side_cpu()
                    result = scenario.run(side, args.seconds, args.connections)
                    note = ""
                    if side == "service" and scenario.title.startswith("POST new"):
                        scored_in = service.drain()  # the tasks of this run scored too
                        note = (f"  ({job_side_note(job_side, service.job_side_cpu(), result['requests'])}, "
                                f"their tasks scored {scored_in:.1f} s after the run; "
                                f"{service.tasks_created() - created} tasks created for "
                                f"{result['answers'].get('202 received', 0)} answers; "
                                f"queue drained in {drained:.1f} s before)")
                    name = "service" if side == "service" else scenario.baseline
                    print(f"  round {round_number + 1}  {scenario.title:26s} {name:10s} {result['rate']:8.0f} req/s  "
                          f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  "
                          f"CPU {result['cpu_us']:5.0f} us/request{note}",
                          flush=True)
        print()
        print(f"{'medians':26s} {'service':>9s}  {'baseline':>20s}  ratio  target  |  "
              "CPU us/request: service, baseline")
        for scenario in scenarios:
            (ours, our_cpu), (theirs, their_cpu) = scenario.medians("service"), scenario.medians("baseline")
            target = f">= {scenario.target}x" if scenario.target else ""
            print(f"{scenario.title:26s} {ours:9.0f}  {scenario.baseline:>10s} {theirs:9.0f}  {ours / theirs:4.2f}x  "
                  f"{target:6s}  |  {our_cpu:5.0f}, {their_cpu:5.0f}")
    finally:
        stop_all(started, tmp)


if __name__ == "__main__":
    main()
