"""What the systems of bench/peers.py share: the peers' venvs, the processes a system is made
of (their CPU time and memory), waiting for a server and for a system to go idle."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import psutil
import requests

from src.local.processes import spawn

HERE = os.path.dirname(os.path.abspath(__file__))  # bench/peers/
ROOT = os.path.dirname(os.path.dirname(HERE))
VAR = os.path.join(ROOT, "var", "peers")
# celery 5.0.5 declares `pytz>dev`, which pip 24.1 and later refuse: the peers' venvs keep
# the pip that Python 3.11.7 ships.
PIP = "pip==23.2.1"


def venv(name: str, requirements: str) -> str:
    """var/peers/<name>/, a venv with `requirements` (a file under bench/peers/) installed:
    made on first use, and made anew when the file changes. Returns its bin/ folder."""
    folder = os.path.join(VAR, name)
    stamp = os.path.join(folder, ".installed")
    path = os.path.join(HERE, requirements)
    with open(path, "rb") as file:
        digest = hashlib.sha256(file.read()).hexdigest()
    if os.path.exists(stamp) and open(stamp).read() == digest:
        return os.path.join(folder, "bin")
    print(f"making {folder} from bench/peers/{requirements} (the first time downloads from PyPI)", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    # The interpreter the dev venv was made from (a venv's python is a link to it).
    subprocess.run([os.path.realpath(sys.executable), "-m", "venv", folder], check=True)
    python = os.path.join(folder, "bin", "python")
    subprocess.run([python, "-m", "pip", "install", "-q", PIP], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "-r", path], check=True)
    with open(stamp, "w") as file:
        file.write(digest)
    return os.path.join(folder, "bin")


class Server:
    """A process this benchmark started, in a session of its own (so all it forks can be
    stopped with it) and tied to our life; its output goes to `log`."""

    def __init__(self, command: list[str], log: str, cwd: str | None = None, env: dict | None = None):
        self.log = open(log, "wb")
        self.process = spawn(command, cwd=cwd, env={**os.environ, **(env or {})},
                             stdout=self.log, stderr=subprocess.STDOUT)

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # any child its leader left behind
        except ProcessLookupError:
            pass
        self.log.close()


def wait_http(url: str, servers: list[Server], timeout: float = 120, status: int = 200) -> None:
    """Until `url` answers `status`; fails at once if one of `servers` exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=5).status_code == status:
                return
        except requests.RequestException:
            pass
        for server in servers:
            assert server.process.poll() is None, f"{server.process.args[0]} exited: see {server.log.name}"
        assert time.monotonic() < deadline, f"{url} did not answer {status} within {timeout} s"
        time.sleep(0.2)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User and system time of `processes`, with the children each has reaped."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def rss_bytes(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


class PeakMemory:
    """The highest sum of the RSS of a system's processes, sampled every `every` seconds
    while the `with` block runs (shared pages count once per process, as `ps` adds them)."""

    def __init__(self, processes: Callable[[], list[psutil.Process]], every: float = 0.02):
        self.processes, self.every = processes, every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.processes()))
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def settle(processes: Callable[[], list[psutil.Process]], busy: float = 0.15, window: float = 0.5,
           timeout: float = 600) -> float:
    """Wait until a system is idle: its processes use less than `busy` of a core over a
    `window` (after a POST run, until the tasks it created are done). Returns the wait."""
    started = time.monotonic()
    while True:
        before = cpu_seconds(processes())
        time.sleep(window)
        if cpu_seconds(processes()) - before < busy * window:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"still busy after {timeout} s"
