"""`make run`: every process of the service on one machine, stopped together.

Starts, in order: a private valkey-server under var/ (when REDIS_URL is unset), the scorer
simulator (when SCORER_URL is unset), $WORKERS RQ workers (one of them runs the scheduler)
and the web server. Ctrl-C or SIGTERM stops them in reverse order; if any of them dies, the
rest are stopped too. Children run in their own sessions, so a Ctrl-C reaches only this
process, which then stops them in order; and they die with it should it be killed outright.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from .embedded_redis import EmbeddedRedis, free_port
from .processes import spawn
from .settings import Settings, SettingsError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def _wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g} s")


def _wait_for_group(process: subprocess.Popen, timeout: float) -> bool:
    """Wait until the child and every process it started (an RQ worker's scheduler and work
    horse) have exited, so that nothing still talks to Redis when it stops."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _check_port_free(port: int) -> None:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise RuntimeError(f"port {port} is already in use (set PORT to use another)")


class Launcher:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.redis: EmbeddedRedis | None = None
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False

    def start(self) -> None:
        _check_port_free(self.settings.port)
        simulator_port = None if self.settings.scorer_url_given else free_port()
        if simulator_port:
            url = f"http://127.0.0.1:{simulator_port}/api/"
            say("SCORER_URL is unset: using the bundled scorer SIMULATOR, a stand-in for the")
            say(f"remote merlinface API, at {url}  (set SCORER_URL to use the real one)")
            self.env["SCORER_URL"] = url
        if not self.settings.redis_url_given:
            self.redis = EmbeddedRedis(os.path.join(ROOT, "var", "redis")).start()
            self.env["REDIS_URL"] = self.redis.url
            say(f"REDIS_URL is unset: embedded valkey-server at {self.redis.url}, data in var/redis/")
        if simulator_port:
            sim = self._child("scorer simulator", ["-m", "src.simulator", "--port", str(simulator_port)])
            _wait_for_port(simulator_port, sim, "the scorer simulator")
        for number in range(1, self.settings.workers + 1):
            self._child(f"worker {number}", ["-m", "src.worker"])
        web = self._child("web server", ["wsgi.py"])
        _wait_for_port(self.settings.port, web, "the web server")
        say(f"ready: http://127.0.0.1:{self.settings.port}/  ({self.settings.workers} workers; Ctrl-C stops all)")

    def _child(self, what: str, args: list[str]) -> subprocess.Popen:
        process = spawn([sys.executable, *args], cwd=ROOT, env=self.env)
        self.children.append((what, process))
        return process

    def watch(self) -> int:
        """Wait until a signal asks us to stop or a child dies; return the exit code."""
        while not self.stopping:
            for what, process in self.children:
                if process.poll() is not None:
                    say(f"{what} exited with code {process.returncode}; stopping everything")
                    return 1
            time.sleep(0.5)
        return 0

    def request_stop(self, signum, frame) -> None:
        self.stopping = True

    def stop(self) -> None:
        """Stop the children, newest first, then the embedded server (it saves its data)."""
        for what, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for what, process in reversed(self.children):
            if not _wait_for_group(process, timeout=15):
                say(f"{what} did not stop within 15 s; killing it")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.redis:
            self.redis.stop()
        say("stopped")


def main() -> int:
    try:
        launcher = Launcher(Settings.from_env())
    except SettingsError as exc:
        say(f"bad setting: {exc}")
        return 2
    signal.signal(signal.SIGINT, launcher.request_stop)
    signal.signal(signal.SIGTERM, launcher.request_stop)
    try:
        launcher.start()
        return launcher.watch()
    except RuntimeError as exc:
        say(f"could not start: {exc}")
        return 1
    finally:
        launcher.stop()


if __name__ == "__main__":
    sys.exit(main())
