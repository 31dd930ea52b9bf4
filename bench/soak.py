"""Soak: minutes of mixed load on `make run` while a chaos loop kills its parts.

Starts `python -m src.local.launcher` (what `make run` runs) under a temporary directory, with its
own VAR_DIR and UPLOAD_DIR, a free PORT, its embedded valkey (append-only file on) and its
scorer simulator (set to answer `wait` twice per task). For --duration seconds it sends a
few requests a second: scoring tasks and resize tasks of distinct photos, some duplicates,
some deletes, and follows every task with GET. Every --chaos-every seconds a chaos loop does
one of: kill -9 a worker's main process, a resize work horse mid-resize, a worker in the
middle of a scoring call, the web server, the dispatcher, the embedded valkey; or has the
simulator forget its retry ids (a scorer restart); half-way between two of those it has the
simulator answer one call with a fault (5xx, 429, garbage, a dropped connection).

When the load stops it waits (at most --settle seconds) for every task to end, asks each
once more, and reports: tasks created, ready, failed by error code, deleted, LOST (a task
answered 202 with its number that later answers 404 though nobody deleted it) and STUCK
(still waiting --settle seconds after the load stopped), answers that break the contract,
what Redis still holds, what the supervisor logged, and the peak RSS of each kind of process.
Then it stops the launcher with SIGTERM and checks that no process is left. Exit status 1 if
anything was lost, stuck, broken or left behind.

With --storage, photos and results are objects in a SeaweedFS `weed` the soak starts
(STORAGE_URL, tests/harness.py's WeedServer), and the chaos loop kills it too (kill -9, started
again on its data 3 s later).

    make soak                   # 3 minutes
    make soak DURATION=60
    .venv/bin/python bench/soak.py --duration 120 --storage
    .venv/bin/python bench/soak.py --duration 600 --rate 4 --chaos-every 15 --seed 7
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import chaos
import psutil
from soak_ledger import Ledger
from soak_load import Load

from harness import Backend, WeedServer
from launched import Launched, alive, command_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {  # for the launcher; printed with the report
    "WORKERS": "2",
    "SWEEP_INTERVAL": "1",  # lease 2 s: a lost job runs again within about 5 s (default 5: ~25 s)
    "SCORER_RETRY_DELAY": "0.5",
    "SCORER_TIMEOUT": "5",
}
SIMULATOR = {"wait_rounds": 2, "slow_seconds": 3}
SCORER_FAULTS = ("503", "429", "500", "garbage", "drop", "bad_result")
KILLS = ("worker", "work horse", "scoring worker", "web server", "dispatcher", "valkey", "scorer restart")
STORE_DOWN = 3.0  # seconds the object store stays killed (--storage)


class Chaos(threading.Thread):
    """Every `every` seconds, the next of KILLS (in a shuffled order, so each comes once in
    every len(KILLS) events); half-way between two, a fault in one scorer answer."""

    def __init__(self, launched: Launched, load: Load, every: float, rng: random.Random, clock,
                 weed: WeedServer | None = None):
        super().__init__(name="chaos", daemon=True)
        self.launched, self.load, self.every, self.rng, self.clock = launched, load, every, rng, clock
        self.weed = weed
        self.kills = KILLS + (("store",) if weed else ())
        self.stop = threading.Event()
        self.events: list[tuple[float, str, str]] = []
        self.killed_children = 0  # of the launcher's own children: the supervisor logs those

    def run(self) -> None:
        order: list[str] = []
        if self.stop.wait(self.every / 2):
            return
        while True:
            self.event("scorer fault", self.scorer_fault)
            if self.stop.wait(self.every / 2):
                return
            if not order:
                order = self.rng.sample(self.kills, len(self.kills))
            kind = order.pop()
            self.event(kind, getattr(self, "kill_" + kind.replace(" ", "_")))
            if self.stop.wait(self.every / 2):
                return

    def event(self, kind: str, action) -> None:
        try:
            what = action()
        except Exception as exc:  # a process went away as we looked, Redis was down, ...
            what = f"skipped: {type(exc).__name__}: {exc}"
        self.events.append((self.clock(), kind, what))
        print(f"  {self.clock():6.1f} s  chaos: {kind:15} {what}", flush=True)

    def scorer_fault(self) -> str:
        fault = self.rng.choice(SCORER_FAULTS)
        self.launched.scorer("_control", faults=[fault])
        return f"the simulator answers the next call with {fault!r}"

    def _kill_child(self, command_part: str) -> str:
        pid = chaos.kill(self.rng.choice(self.launched.children(command_part)))
        self.killed_children += 1
        return f"kill -9 pid {pid}"

    def kill_worker(self) -> str:
        return self._kill_child("src.runners.worker") + " (a worker's main process)"

    def kill_web_server(self) -> str:
        return self._kill_child("wsgi.py")

    def kill_dispatcher(self) -> str:
        return self._kill_child("src.runners.dispatcher")

    def kill_valkey(self) -> str:
        return self._kill_child("valkey-server")

    def kill_scoring_worker(self) -> str:
        self.launched.scorer("_control", faults=["slow", "slow"])  # calls held 3 s
        process = chaos.hunt(lambda: chaos.scoring_worker(self.launched), timeout=10)
        if process is None:
            return "skipped: no worker was seen in a scoring run within 10 s"
        self.killed_children += 1
        return f"kill -9 pid {chaos.kill(process)} (busy on a scoring job: mid-call)"

    def kill_work_horse(self) -> str:
        self.load.big_resize()  # a resize that takes its worker a second or so
        process = chaos.hunt(lambda: chaos.resizing_worker(self.launched), timeout=15)
        if process is None:
            return "skipped: no worker was seen resizing within 15 s"
        return f"kill -9 pid {chaos.kill(process)} (a worker mid-resize: resizes run in it, no work horse)"

    def kill_store(self) -> str:
        self.weed.kill()
        time.sleep(STORE_DOWN)
        started = time.monotonic()
        self.weed.start()
        return (f"kill -9 of the object store; started again {STORE_DOWN:g} s later, "
                f"serving {time.monotonic() - started:.1f} s after that")

    def kill_scorer_restart(self) -> str:
        self.launched.scorer("_forget")
        return "the simulator forgot every retry id (polls now answer 404)"


class Census(threading.Thread):
    """Samples the RSS of every process under the launcher, by kind, every `step` seconds;
    remembers every pid it saw, to check at the end that none is left."""

    def __init__(self, launcher_pid: int, step: float = 0.2):
        super().__init__(name="census", daemon=True)
        self.launcher_pid, self.step = launcher_pid, step
        self.stop = threading.Event()
        self.peak: dict[str, int] = collections.Counter()
        self.pids: dict[str, set[int]] = collections.defaultdict(set)

    def run(self) -> None:
        while not self.stop.wait(self.step):
            try:
                launcher = psutil.Process(self.launcher_pid)
                processes = [launcher, *launcher.children(recursive=True)]
            except psutil.Error:
                continue
            for process in processes:
                try:
                    kind = self.kind_of(process)
                    rss = process.memory_info().rss
                except (psutil.Error, OSError):
                    continue
                self.pids[kind].add(process.pid)
                self.peak[kind] = max(self.peak[kind], rss)

    def kind_of(self, process: psutil.Process) -> str:
        if process.pid == self.launcher_pid:
            return "launcher"
        line = command_line(process)
        for part, kind in (("valkey-server", "valkey"), ("src.local.simulator", "simulator"),
                           ("src.runners.dispatcher", "dispatcher"), ("wsgi.py", "web server")):
            if part in line:
                return kind
        if "src.runners.worker" not in line:
            return process.name()  # valkey's AOF rewrite, say
        if process.ppid() == self.launcher_pid:
            return "worker"
        return "work horse" if os.getpgid(process.pid) == process.pid else "RQ scheduler"

    def left_behind(self) -> list[int]:
        return sorted(pid for pids in self.pids.values() for pid in pids if alive(pid))


def supervisor_summary(log: str, killed_children: int) -> list[str]:
    """What the launcher's log says: deaths it saw, restarts, sweeps that re-ran lost jobs,
    and the tracebacks its children printed, grouped by exception."""
    deaths = re.findall(r"^\[make run\] (.+?) \(pid \d+\) (was killed by \w+|exited with code -?\d+)", log, re.M)
    unexpected = [f"{name} {how}" for name, how in deaths if how != "was killed by SIGKILL"]
    kills = len(deaths) - len(unexpected)
    lines = [f"supervisor: {kills} children killed by SIGKILL (chaos killed {killed_children}), "
             f"{len(re.findall(r'started again', log))} restarts, {len(unexpected)} other exits"
             + (": " + "; ".join(unexpected) if unexpected else "")]
    rerun = len(re.findall(r"was lost; running it again", log))
    failed = len(re.findall(r"its job was lost \d+ times; failing it", log))
    lines.append(f"sweep: {rerun} lost jobs run again, {failed} tasks failed after 3 losses")
    quits = len(re.findall(r"found an unhandled exception, quitting", log))
    schedulers = len(re.findall(r"Scheduler \[PID \d+\] raised an exception", log))
    lines.append(f"RQ: {quits} worker loops ended by an error (src.runners.worker then starts a new one), "
                 f"{schedulers} scheduler processes died")
    chains = _traceback_chains(log)
    lines.append(f"tracebacks in the children's logs: {sum(chains.values())} (chained ones counted once), by the "
                 "exception they end with:" + "".join(f"\n    {n:4}  {name}" for name, n in chains.most_common(8)))
    return lines


_CHAINED = re.compile(r"\n\n(?:During handling of the above exception, another exception occurred|"
                      r"The above exception was the direct cause of the following exception):\n\nTraceback")


def _traceback_chains(log: str) -> collections.Counter:
    """Each chain of tracebacks (an exception raised while handling another), by the
    exception it ends with."""
    lines = _CHAINED.sub("\n~chained", log).splitlines()
    ends: collections.Counter = collections.Counter()
    for start, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            ends[_chain_end(lines, start + 1)] += 1
    return ends


def _chain_end(lines: list[str], at: int) -> str:
    """The last exception of the chain from line `at`: an unindented line not followed by
    another traceback of the chain."""
    for number in range(at, min(len(lines), at + 1000)):
        line = lines[number]
        if line and not line.startswith((" ", "\t", "~chained")):
            if number + 1 < len(lines) and lines[number + 1].startswith("~chained"):
                continue
            return line.split(":", 1)[0][:80]
    return "?"


def scheduler_line(client) -> str:
    """Whether RQ's scheduler (which runs the finished tasks' expiry jobs) runs now: a
    scheduler that died with Redis away leaves its lock until it expires."""
    holder = client.get("rq:scheduler-lock:score")
    if holder is None:
        return "RQ scheduler: no one holds its lock now (a worker takes it within 30 s)"
    pid = client.hget(b"rq:scheduler:" + holder, "pid")
    running = bool(pid) and alive(int(pid))
    return (f"RQ scheduler: lock held by {holder.decode()} (pid {pid and pid.decode()}, "
            f"{'running' if running else 'gone'}); the lock expires in {client.ttl('rq:scheduler-lock:score')} s")


def rss_summary(census: Census) -> str:
    order = ("launcher", "valkey", "simulator", "web server", "dispatcher", "worker", "RQ scheduler", "work horse")
    cells = [f"{kind} {census.peak[kind] / 2**20:.0f} ({len(census.pids[kind])})"
             for kind in order if kind in census.peak]
    return "peak RSS in MiB (processes of that kind seen): " + ", ".join(cells)


def stop_launcher(launched: Launched, census: Census) -> tuple[str, bool]:
    """SIGTERM, then check that nothing the launcher started still runs (and kill what does);
    a line to report, and whether all stopped by themselves."""
    started = time.monotonic()
    launched.process.send_signal(signal.SIGTERM)
    try:
        code = launched.process.wait(30)
    except subprocess.TimeoutExpired:
        launched.process.kill()
        code = launched.process.wait()
    took = time.monotonic() - started
    left = census.left_behind()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    line = (f"stop: SIGTERM -> the launcher exited with {code} after {took:.1f} s; processes left behind: "
            f"{len(left)}" + (f" (pids {left}, killed now)" if left else ""))
    return line, code == 0 and not left


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180, help="seconds of load (at most 3600)")
    parser.add_argument("--rate", type=float, default=3, help="requests a second (POST and DELETE)")
    parser.add_argument("--chaos-every", type=float, default=20, help="seconds between two kills")
    parser.add_argument("--settle", type=float, default=60, help="seconds the tasks get to end afterwards")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--storage", action="store_true", help="photos and results in an object store it kills too")
    parser.add_argument("--log", default=os.path.join(ROOT, "var", "soak", "launcher.log"),
                        help="where to keep the launcher's log (its children's output)")
    args = parser.parse_args()
    args.duration = min(max(args.duration, 10), 3600)
    args.settle = min(max(args.settle, 10), 600)
    return args


def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    deadline = args.duration + args.settle + 120  # a task that stalls shows as stuck, not as a timeout
    settings = {**SETTINGS, "SCORER_DEADLINE": str(int(deadline))}
    print(f"soak: {args.duration:g} s of load at {args.rate:g} requests/s, a kill every {args.chaos_every:g} s, "
          f"then up to {args.settle:g} s to settle; seed {args.seed}")
    print("settings: " + " ".join(f"{k}={v}" for k, v in settings.items())
          + f" (longer than the run); simulator {SIMULATOR}", flush=True)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        weed = WeedServer(os.path.join(tmp, "weed")).start() if args.storage else None
        if weed:
            settings.update(weed.credentials, **Backend("s3", weed, "soak").env)
            print(f"photos and results in {settings['STORAGE_URL']} at {weed.endpoint}", flush=True)
        launched = Launched(tmp, **settings)
        census = Census(launched.process.pid)
        census.start()
        try:
            launched.wait_ready()
            launched.scorer("_control", **SIMULATOR)
            lines, ok = soak(launched, census, args, rng, weed)
        finally:
            if weed:
                weed.stop()
            census.stop.set()
            stopped, clean = stop_launcher(launched, census)
            os.makedirs(os.path.dirname(args.log), exist_ok=True)
            shutil.copy(launched.log_path, args.log)
        print("\n".join([*lines, stopped, f"the launcher's log: {os.path.relpath(args.log)}"]))
        ok = ok and clean
        print("RESULT: " + ("OK" if ok else "FAILED"))
        return 0 if ok else 1


def soak(launched: Launched, census: Census, args, rng: random.Random,
         weed: WeedServer | None = None) -> tuple[list[str], bool]:
    began = time.monotonic()
    clock = lambda: time.monotonic() - began  # noqa: E731
    ledger = Ledger(clock)
    load = Load(launched, ledger, rng, args.rate)
    chaos_loop = Chaos(launched, load, args.chaos_every, rng, clock, weed)
    load.start()
    chaos_loop.start()
    while clock() < args.duration:
        time.sleep(min(30, args.duration - clock()))
        print(f"  {clock():6.1f} s  {ledger.progress_line()}", flush=True)
    chaos_loop.stop.set()
    chaos_loop.join()
    load.finish(timeout=args.settle)
    load_over = clock()
    settled = load.settle(timeout=args.settle)
    print(f"  {clock():6.1f} s  {'settled' if settled else 'NOT settled'}: {ledger.progress_line()}", flush=True)
    lines = [f"\nload ran {load_over:.0f} s; " + (f"every task had ended {clock() - load_over:.1f} s later"
                                                 if settled else f"tasks still waiting {args.settle:g} s later")]
    load.recheck()
    lines += [f"chaos: {len(chaos_loop.events)} events: " + ", ".join(
        f"{kind} {count}" for kind, count in collections.Counter(k for _, k, _ in chaos_loop.events).items())]
    lines += ledger.report(launched.redis)
    lines += supervisor_summary(launched.log(), chaos_loop.killed_children)
    lines.append(scheduler_line(launched.redis))
    lines.append(rss_summary(census))
    return lines, ledger.ok


if __name__ == "__main__":
    sys.exit(main())
