"""What one task costs, and where it goes: `make run` as a user starts it, timed from outside.

For each stack (this checkout, and with --baseline COMMIT the same service at that commit,
extracted with `git archive` into a temporary folder and run from there with the same venv),
rounds taking turns, stack by stack:

- **one client**: a resize of the 2 MP and of the 12 MP photo (fit in 800×800, JPEG; each
  photo made distinct by a JPEG comment, so nothing dedupes), from the POST until the result's
  bytes are in hand: POST, then GET every --poll seconds until ready, then GET of the result;
- **burst**: --burst resizes of the 2 MP photo (and of the 12 MP one) from --clients clients
  at once: tasks per second from the first POST until the last task's `finished_at`, and the
  CPU each kind of process spent per task (work horses counted in their worker: a reaped
  child's time is added to its parent's);
- **GET**: `wrk` with --connections connections on GET of a ready task for --seconds.

With --profile DIR, py-spy (sampling, --nonblocking) records every Python process of the
first stack during an extra one-client and burst round, and the script prints, per kind of
process, the functions that took the most of its samples (inclusive and self), so the
milliseconds can be followed across web, worker, work horse and dispatcher; valkey is C, and
shows only in the CPU figures.

The photos are bench/resize.py's (var/bench/, made from a real photograph on first use).

    make bench-cost-task   # = .venv/bin/python bench/task_cost.py --rounds 5
    .venv/bin/python bench/task_cost.py --rounds 5 --baseline f145f3b
    .venv/bin/python bench/task_cost.py --rounds 1 --profile var/profile
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import redis
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import resize as resize_bench  # noqa: E402  bench/resize.py: the photos
from waiting_tasks import wait_finished  # noqa: E402

from src.local.embedded_redis import free_port  # noqa: E402

PHOTOS = {"2mp": "photo-2mp.jpg", "12mp": "photo-12mp.jpg"}
FIELDS = {"width": "800", "height": "800", "format": "jpeg"}
KINDS = ("web", "worker", "dispatcher", "valkey", "simulator", "launcher")


def tagged(jpeg: bytes, tag: str) -> bytes:
    """The same JPEG with a comment segment (COM) after its SOI: other bytes, same picture."""
    text = tag.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def kind_of(process: psutil.Process) -> str:
    try:
        words = " ".join(process.cmdline())
    except psutil.Error:
        return "gone"
    if "wsgi.py" in words or "src.web" in words:
        return "web"
    if "rq:" in words or "rq-scheduler" in words:
        return "worker"  # a work horse or RQ's scheduler renames itself
    return next((kind for kind in KINDS if kind in words), "other")


class Stack:
    """`python -m src.local.launcher` of the checkout at `root`, in folders of its own."""

    def __init__(self, name: str, root: str, tmp: str, workers: int, env: dict[str, str]):
        self.name, self.root = name, root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        full_env = {**os.environ, "PORT": str(self.port), "WORKERS": str(workers),
                    "VAR_DIR": os.path.join(tmp, "var"), "UPLOAD_DIR": os.path.join(tmp, "uploads"),
                    "USER_RATE": "100000", "USER_BURST": "100000", **env}
        for variable in ("REDIS_URL", "SCORER_URL", "API_KEYS", "TRUSTED_PROXIES"):
            full_env.pop(variable, None)
        self.log = open(os.path.join(tmp, "launcher.log"), "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "src.local.launcher"], cwd=root, env=full_env,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        try:
            while True:
                try:
                    if requests.get(self.url + "readyz", timeout=5).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert self.process.poll() is None and time.monotonic() < deadline, f"{name} did not come up"
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        with open(os.path.join(tmp, "var", "run", "redis.url")) as url_file:
            self.redis_url = url_file.read().strip()
        self.redis = redis.Redis.from_url(self.redis_url)

    def processes(self) -> list[psutil.Process]:
        launcher = psutil.Process(self.process.pid)
        return [launcher, *launcher.children(recursive=True)]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far by kind of process, reaped children (work horses) included."""
        seconds: dict[str, float] = collections.defaultdict(float)
        for process in self.processes():
            try:
                times = process.cpu_times()
                kind = kind_of(process)
                if kind == "launcher":  # its reaped children are the restarted ones: not ours
                    seconds[kind] += times.user + times.system
                else:
                    seconds[kind] += times.user + times.system + times.children_user + times.children_system
            except psutil.Error:
                pass
        return seconds

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


def one_task(session: requests.Session, stack: Stack, photo: bytes, poll: float,
             fields: dict[str, str] = FIELDS) -> dict[str, float]:
    """One resize from POST to the result's bytes in hand, in milliseconds by phase."""
    started = time.perf_counter()
    answer = session.post(stack.url, files={"photo": ("p.jpg", photo, "image/jpeg")}, data=fields, timeout=60)
    assert answer.status_code == 202, answer.text
    task = answer.json()["task"]
    posted = time.perf_counter()
    polls = 0
    while True:
        state = session.get(stack.url, params={"task_id": task}, timeout=60).json()
        polls += 1
        if state["status"] != "wait":
            break
        time.sleep(poll)
    assert state["status"] == "ready", state
    ready = time.perf_counter()
    image = session.get(stack.url.rstrip("/") + state["result"]["url"], timeout=60)
    assert image.status_code == 200 and len(image.content) == state["result"]["bytes"]
    done = time.perf_counter()
    created, finished = (float(v) for v in stack.redis.hmget(f"pt:task:{task}", "created_at", "finished_at"))
    return {"total": (done - started) * 1000, "post": (posted - started) * 1000,
            "until ready": (ready - posted) * 1000, "result GET": (done - ready) * 1000,
            "created→finished (server)": (finished - created) * 1000, "polls": polls, "task": task}


def timeline(stack: Stack, photo: bytes, poll: float) -> dict[str, float]:
    """One resize, its task watched in Redis every millisecond from another connection: when
    (ms after the POST was sent) each step became visible, across web, worker and work horse."""
    watcher = redis.Redis.from_url(stack.redis_url)
    marks: dict[str, float] = {}
    stop = threading.Event()
    task_box: list[int] = []
    started = time.time()

    def watch() -> None:
        seen = None
        while not stop.is_set():
            if task_box:
                state, progress, job_id = watcher.hmget(f"pt:task:{task_box[0]}", "state", "progress", "job_id")
                now = time.time()
                if (state, progress) != seen:
                    seen = (state, progress)
                    marks.setdefault(f"task {state.decode()} {progress.decode()}%", (now - started) * 1000)
            time.sleep(0.001)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    with requests.Session() as session:
        answer = session.post(stack.url, files={"photo": ("p.jpg", photo, "image/jpeg")}, data=FIELDS, timeout=60)
        marks["POST answered"] = (time.time() - started) * 1000
        task_box.append(answer.json()["task"])
        while session.get(stack.url, params={"task_id": task_box[0]}, timeout=60).json()["status"] == "wait":
            time.sleep(poll)
        marks["client saw ready"] = (time.time() - started) * 1000
    stop.set()
    thread.join()
    task = stack.redis.hgetall(f"pt:task:{task_box[0]}")
    marks["created_at (web)"] = (float(task[b"created_at"]) - started) * 1000
    marks["finished_at (horse)"] = (float(task[b"finished_at"]) - started) * 1000
    job = stack.redis.hgetall(f"rq:job:{task[b'job_id'].decode()}")
    for field in (b"enqueued_at", b"started_at", b"ended_at"):
        if job.get(field):
            stamp = datetime.datetime.fromisoformat(job[field].decode().replace("Z", "+00:00"))
            marks[f"rq job {field.decode()}"] = (stamp.timestamp() - started) * 1000
    return dict(sorted(marks.items(), key=lambda item: item[1]))


def burst(stack: Stack, jpeg: bytes, count: int, clients: int) -> dict[str, float]:
    """`count` resizes posted by `clients` at once; tasks/s until the last finished, CPU ms
    per task by kind of process."""
    local = threading.local()
    run = secrets.token_hex(4)

    def post(number: int) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        photo = tagged(jpeg, f"{run}-{number}")
        answer = local.session.post(stack.url, files={"photo": ("p.jpg", photo, "image/jpeg")}, data=FIELDS,
                                    timeout=120)
        assert answer.status_code == 202, answer.text
        return answer.json()["task"]

    before = stack.cpu()
    started = time.time()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        tasks = list(pool.map(post, range(count)))
    last = wait_finished(stack.redis, tasks)
    after = stack.cpu()
    figures = {"tasks/s": count / (last - started)}
    for kind in after:
        figures[f"cpu ms/task {kind}"] = (after[kind] - before.get(kind, 0.0)) / count * 1000
    figures["cpu ms/task all"] = sum(value for key, value in figures.items() if key.startswith("cpu ms/task"))
    return figures


def wrk_get(stack: Stack, task: int, seconds: int, connections: int) -> dict[str, float]:
    output = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency",
                             f"{stack.url}?task_id={task}"], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", output)
    factor = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    assert not errors, output
    return {"req/s": rate, "p50 ms": float(p50.group(1)) * factor}


# --- py-spy --------------------------------------------------------------------------------


class Profiler:
    """py-spy recording every Python process of `stack` (a worker with its work horses)."""

    def __init__(self, stack: Stack, out_dir: str, rate: int):
        os.makedirs(out_dir, exist_ok=True)
        self.recorders = []
        spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        for process in stack.processes():
            kind = kind_of(process)
            if kind in ("valkey", "launcher", "simulator", "gone") or "rq:" in " ".join(process.cmdline()):
                continue
            path = os.path.join(out_dir, f"{kind}-{process.pid}.txt")
            command = [spy, "record", "--nonblocking", "-r", str(rate), "-f", "raw", "-o", path, "-p", str(process.pid)]
            if kind == "worker":
                command.append("--subprocesses")
            recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.recorders.append((kind, path, recorder))
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> dict[str, list[str]]:
        for _, _, recorder in self.recorders:
            recorder.send_signal(signal.SIGINT)
        paths: dict[str, list[str]] = collections.defaultdict(list)
        for kind, path, recorder in self.recorders:
            recorder.wait(60)
            if os.path.exists(path):
                paths[kind].append(path)
        return paths


FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    file = match.group("file")
    for marker in ("site-packages/", "/src/", "python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match.group('function')} ({os.path.basename(file) if '/' not in file else file})"


def summarise(kind: str, paths: list[str], rate: int, per: int, top: int) -> None:
    """The functions that took most of this kind of process's samples, in ms per task."""
    inclusive: collections.Counter = collections.Counter()
    self_time: collections.Counter = collections.Counter()
    total = 0
    for path in paths:
        with open(path) as file:
            for line in file:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if not stack:
                    continue
                samples = int(count)
                frames = [frame_name(frame) for frame in stack.split(";")]
                if frames and frames[0].startswith("process "):
                    frames = frames[1:]  # --subprocesses: which process
                total += samples
                for name in set(frames):
                    inclusive[name] += samples
                if frames:
                    self_time[frames[-1]] += samples
    to_ms = 1000 / rate / per
    print(f"\n[{kind}] {len(paths)} process(es): {total * to_ms:.1f} ms of samples per task (active only)")
    print("  inclusive:")
    for name, samples in inclusive.most_common(top):
        print(f"    {samples * to_ms:8.2f} ms  {name}")
    print("  self:")
    for name, samples in self_time.most_common(top):
        print(f"    {samples * to_ms:8.2f} ms  {name}")


# --- the runs ------------------------------------------------------------------------------


def extract(commit: str, tmp: str) -> str:
    folder = os.path.join(tmp, f"checkout-{commit}")
    os.makedirs(folder)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def median_table(results: dict, title: str) -> None:
    print(f"\n{title}")
    for what, by_stack in results.items():
        names = list(by_stack)
        cells = []
        for name in names:
            values = by_stack[name]
            cells.append(f"{name} {statistics.median(values):8.1f} ({min(values):.1f}–{max(values):.1f})")
        ratio = ""
        medians = [statistics.median(by_stack[name]) for name in names]
        if len(names) == 2 and medians[1]:
            ratio = f"   {names[0]}/{names[1]} = {medians[0] / medians[1]:.2f}"
        print(f"  {what:34s} " + "   ".join(cells) + ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--singles", type=int, default=5, help="one-client tasks per photo per round")
    parser.add_argument("--burst", type=int, default=200, help="tasks per burst (0: none)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=5, help="of wrk per GET round (0: none)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--poll", type=float, default=0.01, help="seconds between a client's polls")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline", help="a commit to run beside this checkout, round by round")
    parser.add_argument("--env", action="append", default=[], help="VAR=value for this checkout's stack")
    parser.add_argument("--baseline-env", action="append", default=[], help="VAR=value for the baseline's")
    parser.add_argument("--profile", help="folder for py-spy's records of this checkout's stack")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--only", default="2mp,12mp")
    parser.add_argument("--timelines", type=int, default=5, help="tasks watched step by step per photo")
    args = parser.parse_args()
    names = args.only.split(",")
    resize_bench.prepare([name for name in names])
    jpegs = {name: open(os.path.join(resize_bench.CACHE, PHOTOS[name]), "rb").read() for name in names}
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the start")

    with tempfile.TemporaryDirectory() as tmp:
        stacks: list[Stack] = []
        try:
            env = dict(item.split("=", 1) for item in args.env)
            os.makedirs(os.path.join(tmp, "this"))
            stacks.append(Stack("this", ROOT, os.path.join(tmp, "this"), args.workers, env))
            if args.baseline:
                root = extract(args.baseline, tmp)
                os.makedirs(os.path.join(tmp, "base"))
                stacks.append(Stack(args.baseline, root, os.path.join(tmp, "base"), args.workers,
                                    dict(item.split("=", 1) for item in args.baseline_env)))
            results: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
            ready_task: dict[str, int] = {}
            for round_number in range(args.rounds):
                for stack in stacks if round_number % 2 == 0 else stacks[::-1]:
                    with requests.Session() as session:
                        for name in names:
                            phases = collections.defaultdict(list)
                            for n in range(args.singles):
                                photo = tagged(jpegs[name], f"{stack.name}-{round_number}-{n}-{secrets.token_hex(4)}")
                                timings = one_task(session, stack, photo, args.poll)
                                ready_task.setdefault(stack.name, timings.pop("task"))
                                for phase, ms in timings.items():
                                    phases[phase].append(ms)
                            for phase, values in phases.items():
                                results[f"one client {name}: {phase}"][stack.name].append(statistics.median(values))
                    if args.burst:
                        for name in names:
                            for what, value in burst(stack, jpegs[name], args.burst, args.clients).items():
                                results[f"burst {name}: {what}"][stack.name].append(value)
                    if args.seconds:
                        for what, value in wrk_get(stack, ready_task[stack.name], args.seconds,
                                                   args.connections).items():
                            results[f"GET ready, {args.connections} conns: {what}"][stack.name].append(value)
                print(f"round {round_number + 1} done, load average {os.getloadavg()[0]:.1f}", flush=True)
            median_table(results, f"medians of {args.rounds} rounds (min–max across rounds)")
            for stack in stacks:
                for name in names if args.timelines else ():
                    lines = collections.defaultdict(list)
                    for n in range(args.timelines):
                        for mark, ms in timeline(stack, tagged(jpegs[name], f"t-{n}-{secrets.token_hex(4)}"),
                                                 args.poll).items():
                            lines[mark].append(ms)
                    print(f"\n{stack.name}, {name}: when each step was seen, ms after the POST was sent "
                          f"(medians of {args.timelines})")
                    for mark, values in sorted(lines.items(), key=lambda item: statistics.median(item[1])):
                        print(f"  {statistics.median(values):8.1f}  {mark}")
            if args.profile:
                profile(stacks[0], jpegs, args)
        finally:
            for stack in stacks:
                stack.stop()


def profile(stack: Stack, jpegs: dict[str, bytes], args) -> None:
    for name, jpeg in jpegs.items():
        out = os.path.join(args.profile, name)
        profiler = Profiler(stack, out, args.rate)
        with requests.Session() as session:
            for n in range(args.singles * 4):
                one_task(session, stack, tagged(jpeg, f"profile-{n}-{secrets.token_hex(4)}"), args.poll)
        recorded = profiler.stop()
        print(f"\n=== py-spy, {args.singles * 4} one-client {name} resizes, {args.rate} Hz ===")
        for kind, paths in sorted(recorded.items()):
            summarise(kind, paths, args.rate, args.singles * 4, top=25)
    if args.seconds:
        with requests.Session() as session:
            task = one_task(session, stack, tagged(next(iter(jpegs.values())), secrets.token_hex(8)), args.poll)["task"]
        profiler = Profiler(stack, os.path.join(args.profile, "get"), args.rate)
        figures = wrk_get(stack, task, args.seconds, args.connections)
        recorded = profiler.stop()
        count = int(figures["req/s"] * args.seconds)
        print(f"\n=== py-spy, GET of a ready task, {count} requests ({figures['req/s']:.0f} req/s) ===")
        for kind, paths in sorted(recorded.items()):
            if kind == "web":
                summarise(kind, paths, args.rate, count, top=30)


if __name__ == "__main__":
    main()
