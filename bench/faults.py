"""Time to recover from each fault of the contract's "What survives what", under `make run`.

Starts `python -m src.local.launcher` (what `make run` runs) under a temporary directory with its
default settings (SWEEP_INTERVAL=5, SCORER_RETRY_DELAY=2, two workers; --sweep-interval
changes the one that sets how fast a lost job is found), then runs each scenario --repeat
times, one at a time, and prints every run and the median and maximum of each time (in
seconds from the fault):

- a scoring run killed mid-call (kill -9 of the worker running it: scoring runs in the
  worker process), the scorer holding the call 5 s: until the job calls the scorer again,
  and until the task is ready;
- a worker killed mid-resize (resizes run in the worker: there is no work horse any more):
  until the task is ready (one result file);
- the same, timed until the task is ready, until
  the supervisor's new worker is registered with RQ, and how many GETs failed meanwhile;
- the web server killed: until it answers again;
- the embedded valkey killed with 20 scoring tasks waiting (the scorer answers `wait` 3
  times): how long the web answered 503, and until all 20 are ready, next to the same 20
  tasks without the fault;
- the embedded valkey stopped (SIGSTOP) for 10 s with 20 scoring tasks waiting, so that
  every time to live in it (liveness keys, leases) runs out: until all 20 are ready;
- the scorer forgetting its retry ids with 10 tasks waiting: until all 10 are ready, next
  to the same without the fault;
- a scoring job lost 3 times (its worker killed mid-call each time): until the task fails
  with internal_error;
- a task past SCORER_DEADLINE with every worker and the dispatcher stopped (SIGSTOP), in a
  second launcher with SCORER_DEADLINE=8: how long after its deadline GET answers
  failed / scorer_timeout;
- the object store killed (kill -9 of a SeaweedFS `weed` the bench starts, restarted on its
  data 10 s later) with 5 resize and 10 scoring tasks waiting, in a third launcher with
  STORAGE_URL set: until POST answers 503, until it answers 202 again, and until all 15 end.

    make bench-faults                          # default settings
    .venv/bin/python bench/faults.py --sweep-interval 1 --repeat 3 --only worker,web
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import random
import signal
import statistics
import tempfile
import time

import chaos
import requests
from rq import Worker

from harness import Backend, WeedServer, files_under, make_photo, noisy_photo
from launched import Launched

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NAME = "Ann Lee"
POLL = 0.05  # seconds between two GETs while timing
seeds = itertools.count(1000)


class Timer:
    """Seconds since it was made (the fault), and the moments that matter after it."""

    def __init__(self):
        self.start = time.monotonic()
        self.times: dict[str, float] = {}

    def mark(self, what: str) -> None:
        self.times.setdefault(what, time.monotonic() - self.start)


def get(launched: Launched, task: int) -> requests.Response | None:
    try:
        return launched.get(task)
    except requests.RequestException:
        return None


def follow(launched: Launched, tasks: list[int], timeout: float, timer: Timer | None = None,
           also: dict | None = None) -> dict:
    """GET the tasks every POLL seconds until none waits and every condition in `also` (name:
    callable) has come true, or `timeout`; marks "ended" and each condition on `timer`.
    Returns the tasks' last answers, and how many GETs got no answer or a 5xx."""
    timer, also = timer or Timer(), also or {}
    bodies: dict[int, dict] = {}
    hiccups = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (len(bodies) == len(tasks) and set(also) <= set(timer.times)):
        for name, condition in also.items():
            if name not in timer.times and condition():
                timer.mark(name)
        for task in set(tasks) - set(bodies):
            answer = get(launched, task)
            if answer is None or answer.status_code >= 500:
                hiccups += 1
            elif answer.status_code != 202:
                bodies[task] = answer.json()
        if tasks and len(bodies) == len(tasks):
            timer.mark("ended")
        time.sleep(POLL)
    return {"bodies": bodies, "hiccups": hiccups}


def outcome(bodies: dict[int, dict], expected: int) -> str:
    states = [b["status"] + ("/" + b["error"]["code"] if b.get("error") else "") for b in bodies.values()]
    states += ["still waiting"] * (expected - len(bodies))
    return ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))


def post_score(launched: Launched, photo: bytes | None = None) -> int:
    answer = launched.post(photo or noisy_photo("JPEG", (64, 48), next(seeds)), name=NAME)
    assert answer.status_code == 202, answer.text
    return answer.json()["task"]


def scorer_starts(launched: Launched, photo: bytes) -> list[float]:
    """When the simulator was sent this photo (wall clock)."""
    digest = hashlib.sha256(photo).hexdigest()
    return [c["time"] for c in launched.scorer("_calls").json() if c["files"].get("photo", {}).get("sha256") == digest]


# --- the scenarios: each returns its times (seconds after the fault) and what came of it ----
def scoring_run_killed(launched: Launched) -> tuple[dict, str]:
    launched.scorer("_control", faults=["slow"], slow_seconds=5)
    photo = noisy_photo("JPEG", (64, 48), next(seeds))
    task = post_score(launched, photo)
    chaos.kill(chaos.hunt(lambda: chaos.scoring_worker(launched), timeout=10))
    timer = Timer()
    ended = follow(launched, [task], timeout=90, timer=timer,
                   also={"job ran again": lambda: len(scorer_starts(launched, photo)) > 1})
    return timer.times, outcome(ended["bodies"], 1) + f", {len(scorer_starts(launched, photo))} scorer calls"


def resize_horse_killed(launched: Launched) -> tuple[dict, str]:
    before = results_count(launched)
    task = post_resize(launched)
    chaos.kill(chaos.hunt(lambda: chaos.resizing_worker(launched), timeout=15))
    timer = Timer()
    ended = follow(launched, [task], timeout=90, timer=timer)
    return timer.times, (
        outcome(ended["bodies"], 1) + f", {results_count(launched) - before} new result file(s)")


def worker_killed(launched: Launched) -> tuple[dict, str]:
    task = post_resize(launched)
    worker = chaos.hunt(lambda: chaos.resizing_worker(launched), timeout=15)
    chaos.kill(worker)
    timer = Timer()
    ended = follow(launched, [task], timeout=90, timer=timer,
                   also={"new worker registered": lambda: worker_registered(launched, worker.pid)})
    return timer.times, outcome(ended["bodies"], 1) + f"; {ended['hiccups']} GETs failed meanwhile"


def worker_registered(launched: Launched, dead_pid: int) -> bool:
    """The supervisor's new worker is up, and RQ lists it."""
    pids = {p.pid for p in launched.children("src.runners.worker")} - {dead_pid}
    return len(pids) == 2 and pids <= {w.pid for w in Worker.all(connection=launched.redis)}


def web_killed(launched: Launched) -> tuple[dict, str]:
    for web in launched.children("wsgi.py"):  # all WEB_PROCESSES of them: while one runs, it answers
        chaos.kill(web)
    timer = Timer()
    follow(launched, [], timeout=30, timer=timer, also={"answers again": launched.answers})
    return timer.times, "answers" if launched.answers() else "does not answer"


def valkey_killed(launched: Launched, fault: bool = True) -> tuple[dict, str]:
    return _many_waiting(launched, 20, lambda: chaos.kill(launched.child("valkey-server")) if fault else None)


def valkey_hung(launched: Launched) -> tuple[dict, str]:
    """SIGSTOP for HANG seconds, then SIGCONT: every key's time to live (workers' liveness
    keys, tasks' leases) runs out meanwhile, as after a long outage."""
    valkey = launched.child("valkey-server")

    def hang() -> None:
        valkey.send_signal(signal.SIGSTOP)
        time.sleep(HANG)
        valkey.send_signal(signal.SIGCONT)

    return _many_waiting(launched, 20, hang)


def scorer_forgot(launched: Launched, fault: bool = True) -> tuple[dict, str]:
    return _many_waiting(launched, 10, lambda: launched.scorer("_forget") if fault else None)


def _many_waiting(launched: Launched, count: int, fault) -> tuple[dict, str]:
    """`count` scoring tasks, each answered `wait` 3 times; once the scorer has seen them
    all, the fault; then until all end (and, for Redis, until it answers again)."""
    launched.scorer("_control", wait_rounds=3)
    calls = len(launched.scorer("_calls").json())
    tasks = [post_score(launched) for _ in range(count)]
    chaos.hunt(lambda: len(launched.scorer("_calls").json()) >= calls + count, timeout=30, step=POLL)
    timer = Timer()
    fault()
    ended = follow(launched, tasks, timeout=120, timer=timer, also={"web answers without 503": launched.answers})
    launched.scorer("_control", wait_rounds=0)
    return timer.times, outcome(ended["bodies"], count)


def lost_three_times(launched: Launched) -> tuple[dict, str]:
    launched.scorer("_control", always="slow", slow_seconds=5)
    task = post_score(launched)
    timer = None
    for loss in range(1, 4):
        chaos.kill(chaos.hunt(lambda: chaos.scoring_worker(launched), timeout=90, step=0.02))
        timer = timer or Timer()
        timer.mark(f"loss {loss}")
    ended = follow(launched, [task], timeout=120, timer=timer)
    launched.scorer("_reset")
    return timer.times, outcome(ended["bodies"], 1)


def post_resize(launched: Launched) -> int:
    photo, fields = chaos.big_resize(next(seeds))
    answer = launched.post(photo, filename="big.png", content_type="image/png", **fields)
    assert answer.status_code == 202, answer.text
    return answer.json()["task"]


def results_count(launched: Launched) -> int:
    return sum(path.startswith("results/") for path in files_under(launched.upload_dir))


def deadline_with_nothing_running(launched: Launched) -> tuple[dict, str]:
    """In a launcher with SCORER_DEADLINE=8: every worker and the dispatcher stopped."""
    launched.scorer("_control", wait_rounds=1000)
    posted = time.monotonic()
    task = post_score(launched)
    stopped = [*launched.children("src.runners.worker"), launched.child("src.runners.dispatcher")]
    for process in stopped:
        process.send_signal(signal.SIGSTOP)
    try:
        ended = follow(launched, [task], timeout=30)
        after = time.monotonic() - posted - DEADLINE
    finally:
        for process in stopped:
            process.send_signal(signal.SIGCONT)
    return {"answered failed after its deadline": after}, outcome(ended["bodies"], 1)


def store_killed(launched: Launched) -> tuple[dict, str]:
    """In a launcher with STORAGE_URL: kill -9 of the store for STORE_DOWN s."""
    weed = STORE["weed"]
    launched.scorer("_control", wait_rounds=3)
    tasks = [post_resize(launched) for _ in range(5)] + [post_score(launched) for _ in range(10)]
    probe = make_photo(next(seeds))
    timer = Timer()
    weed.kill()
    follow(launched, [], timeout=30, timer=timer,
           also={"POST answers 503": lambda: _post_status(launched, probe) == 503})
    time.sleep(max(0.0, STORE_DOWN - (time.monotonic() - timer.start)))
    weed.start()
    timer.mark("store back")
    ended = follow(launched, tasks, timeout=180, timer=timer,
                   also={"POST answers 202 again": lambda: _post_status(launched, probe) in (200, 202)})
    launched.scorer("_control", wait_rounds=0)
    return timer.times, outcome(ended["bodies"], len(tasks))


def _post_status(launched: Launched, photo: bytes) -> int:
    try:
        return launched.post(photo, width=50).status_code
    except requests.RequestException:
        return 0


DEADLINE = 8
HANG = 10
STORE_DOWN = 10
STORE: dict = {}  # the bench's `weed`, for store_killed
PHASES = random.Random(7)
SCENARIOS = {  # name: (function, what it is, runs at most)
    "scoring": (scoring_run_killed, "kill -9 of the worker running a scoring job, mid-call", None),
    "horse": (resize_horse_killed, "kill -9 of a worker mid-resize (no work horse: resizes run in it)", None),
    "worker": (worker_killed, "kill -9 of a worker mid-resize, until a new one is registered", None),
    "web": (web_killed, "kill -9 of the web server", None),
    "valkey": (valkey_killed, "kill -9 of the embedded valkey, 20 scoring tasks waiting", None),
    "hang": (valkey_hung, f"valkey stopped (SIGSTOP) for {HANG} s, 20 scoring tasks waiting", None),
    "forget": (scorer_forgot, "the scorer forgets its retry ids, 10 scoring tasks waiting", None),
    "losses": (lost_three_times, "a scoring job lost 3 times (worker killed mid-call each time)", 1),
    "deadline": (deadline_with_nothing_running, f"SCORER_DEADLINE={DEADLINE}, all workers and the "
                 "dispatcher stopped (SIGSTOP)", 1),
    "store": (store_killed, f"kill -9 of the object store for {STORE_DOWN} s, 5 resize and 10 scoring "
              "tasks waiting (STORAGE_URL set)", None),
}
BASELINES = {"valkey", "forget"}  # also run without the fault, in the same run


def run(name: str, launched: Launched, repeat: int, sweep_interval: float) -> list[str]:
    """Run a scenario `repeat` times (and its baseline); its summary lines. Each run starts
    at a random point of the sweep's cycle: a scenario that ended by a sweep would otherwise
    start the next in step with the sweeps, and always measure the same case."""
    function, title, most = SCENARIOS[name]
    runs = min(repeat, most or repeat)
    print(f"\n{name}: {title}", flush=True)
    lines = []
    for label, call in [("with the fault", function)] + (
            [("baseline, no fault", lambda stack: function(stack, fault=False))] if name in BASELINES else []):
        timings = []
        for number in range(1, runs + 1):
            time.sleep(PHASES.uniform(0, sweep_interval))
            times, what = call(launched)
            timings.append(times)
            print(f"  {label} #{number}: " + ", ".join(f"{k} {_s(v)}" for k, v in times.items()) + f"; {what}",
                  flush=True)
        lines.append(f"{name:9} {label:15} " + "; ".join(
            f"{key}: median {_s(statistics.median(_known(t.get(key) for t in timings)))}, "
            f"max {_s(max(_known(t.get(key) for t in timings)))}" for key in timings[0]) + f"  ({runs} runs)")
    return lines


def _known(values) -> list[float]:
    return [v for v in values if v is not None] or [float("nan")]


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def start(tmp: str, name: str, **env: str) -> Launched:
    folder = os.path.join(tmp, name)
    os.makedirs(folder)
    launched = Launched(folder, **env)
    launched.wait_ready()
    return launched


def stop(launched: Launched, failed: bool) -> None:
    """SIGTERM; after a scenario failed, the end of the launcher's log first."""
    if failed:
        print("\nthe launcher's log ends:\n" + launched.log()[-4000:])
    launched.process.send_signal(signal.SIGTERM)
    launched.process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep-interval", type=float, help="SWEEP_INTERVAL (default: the service's, 5)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SCENARIOS)
    env = {"SWEEP_INTERVAL": f"{args.sweep_interval:g}"} if args.sweep_interval else {}
    print("make run with default settings" + "".join(f", {k}={v}" for k, v in env.items()))
    summary = []
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        runs = [("main", env, [n for n in names if n not in ("deadline", "store")]),
                ("deadline", {**env, "SCORER_DEADLINE": str(DEADLINE)}, [n for n in names if n == "deadline"]),
                ("store", env, [n for n in names if n == "store"])]
        for folder, settings, scenarios in runs:
            if not scenarios:
                continue
            if folder == "store":
                weed = STORE["weed"] = WeedServer(os.path.join(tmp, "weed")).start()
                settings = {**settings, **weed.credentials, **Backend("s3", weed, "faults").env}
            launched, failed = start(tmp, folder, **settings), True
            try:
                for name in scenarios:
                    summary += run(name, launched, args.repeat, args.sweep_interval or 5)
                failed = False
            finally:
                stop(launched, failed)
                if folder == "store":
                    STORE["weed"].stop()
    print("\nsummary (seconds after the fault):\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
