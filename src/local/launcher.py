"""`make run`: every process of the service on one machine, supervised.

Decides what to start, in order: a private valkey-server under $VAR_DIR/redis (when REDIS_URL
is unset), the scorer simulator (when SCORER_URL is unset), $WORKERS RQ workers (with RQ's
scheduler), the dispatcher (src/runners/dispatcher.py), the callback deliverer
(src/runners/deliverer.py, when WEBHOOK_SECRET is set) and $WEB_PROCESSES web processes on
one port (src/local/web_processes.py). `src/local/supervisor.py` keeps them running: a child
that dies is restarted with backoff, and Ctrl-C or SIGTERM stops them all. Children run in
their own sessions, so a Ctrl-C reaches only this process, which then stops them; and they
get SIGTERM should it be killed outright.

While it runs, the embedded server's URL is in $VAR_DIR/run/redis.url (for `make dashboard`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

from src.local import web_processes
from src.local.embedded_redis import EmbeddedRedis, free_port
from src.local.supervisor import Child, Supervisor, say
from src.settings import Settings, SettingsError
from src.storage import open_storage

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _ready_when(probe: Callable[[], None], what: str, failing: str, timeout: float = 30):
    """A `Child.ready` check: `probe()` returns (does not raise OSError) while the child runs."""

    def wait(process: subprocess.Popen) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with code {process.returncode}")
            try:
                probe()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{what} {failing} within {timeout:g} s")

    return wait


def _listening_on(port: int, what: str, timeout: float = 30):
    """A `Child.ready` check: the child accepts connections on `port`."""
    return _ready_when(lambda: socket.create_connection(("127.0.0.1", port), timeout=0.2).close(), what,
                       f"did not listen on port {port}", timeout)


def _answering(port: int, what: str):
    """A `Child.ready` check for a web process: it runs, and GET /healthz on `port` answers
    (the sockets are listening before any web process is started)."""
    return _ready_when(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close(), what,
                       f"did not answer on port {port}")


def _check_port_free(port: int) -> None:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise RuntimeError(f"port {port} is already in use (set PORT to use another)")


class RedisUrlFile:
    """$VAR_DIR/run/redis.url: the embedded server's URL, there while `make run` runs."""

    def __init__(self, var_dir: str):
        self.path = os.path.join(var_dir, "run", "redis.url")

    def write(self, url: str) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path + ".new", "w") as file:
            file.write(url + "\n")
        os.replace(self.path + ".new", self.path)

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Launcher:
    def __init__(self, settings: Settings):
        self.settings = settings
        open_storage(settings)  # a bad STORAGE_URL is a bad setting, said once, not a web that keeps dying
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # completed by start() as it goes
        self.supervisor = Supervisor(cwd=ROOT, env=self.env)
        self.url_file: RedisUrlFile | None = None
        self.sockets: list = []

    def start(self) -> None:
        settings = self.settings
        _check_port_free(settings.port)
        if not settings.redis_url_given:
            redis = EmbeddedRedis(os.path.join(settings.var_dir, "redis"))
            self.env["REDIS_URL"] = redis.url
            self.supervisor.start(Child("embedded valkey", redis.command(), ready=redis.wait_until_ready,
                                        stop_last=True))
            self.url_file = RedisUrlFile(settings.var_dir)
            self.url_file.write(redis.url)
            say(f"REDIS_URL is unset: embedded valkey-server at {redis.url}, data in {redis.data_dir}")
        if not settings.scorer_url_given:
            port = free_port()
            self.env["SCORER_URL"] = f"http://127.0.0.1:{port}/api/"
            say("SCORER_URL is unset: using the bundled scorer SIMULATOR, a stand-in for the")
            say(f"remote merlinface API, at {self.env['SCORER_URL']}  (set SCORER_URL to use the real one)")
            self.supervisor.start(Child("scorer simulator", _python("-m", "src.local.simulator", "--port", str(port)),
                                        ready=_listening_on(port, "the scorer simulator")))
        if settings.storage_url:
            say(f"STORAGE_URL is set: photos and results in {settings.storage_url} at "
                f"{settings.s3_endpoint_url or 'AWS S3'} (uploads spool in {settings.upload_dir})")
        for number in range(1, settings.workers + 1):
            self.supervisor.start(Child(f"worker {number}", _python("-m", "src.runners.worker")))
        self.supervisor.start(Child("dispatcher", _python("-m", "src.runners.dispatcher")))
        if settings.webhook_secret:  # without it no callback_url is taken
            self.supervisor.start(Child("callback deliverer", _python("-m", "src.runners.deliverer")))
        self.sockets = web_processes.listen(settings)  # held here: every web process accepts from them
        for child in web_processes.web_children(settings, self.sockets, self.env):
            child.ready = _answering(settings.port, child.name)
            self.supervisor.start(child)
        say(f"ready: http://127.0.0.1:{settings.port}/  ({settings.web_processes} web processes, "
            f"{settings.workers} workers; a child that dies is restarted; Ctrl-C stops all)")

    def stop(self) -> None:
        self.supervisor.stop()
        for sock in self.sockets:
            sock.close()
        if self.url_file:
            self.url_file.remove()
        say("stopped")


def main() -> int:
    try:
        launcher = Launcher(Settings.from_env())
    except SettingsError as exc:
        say(f"bad setting: {exc}")
        return 2
    signal.signal(signal.SIGINT, launcher.supervisor.request_stop)
    signal.signal(signal.SIGTERM, launcher.supervisor.request_stop)
    try:
        launcher.start()
        launcher.supervisor.run()
        return 0
    except RuntimeError as exc:
        say(f"could not start: {exc}")
        return 1
    finally:
        launcher.stop()


if __name__ == "__main__":
    sys.exit(main())
