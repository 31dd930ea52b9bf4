"""`make run` as a user starts it: `python -m src.local.launcher` as a subprocess in a folder of
its own, and its children found by command line. Shared by the supervision tests and the
fault benches (bench/faults.py, bench/soak.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import psutil
import redis
import requests

from harness import ROOT, Client, wait_for
from src.local.embedded_redis import free_port
from src.local.processes import spawn


class Launched(Client):
    """`python -m src.local.launcher` (what `make run` runs) as a subprocess, with its own VAR_DIR
    and UPLOAD_DIR under `tmp_dir`, a free PORT, and REDIS_URL and SCORER_URL unset (so it
    starts its embedded valkey and the simulator); `env` adds settings. Its children are
    found by command line."""

    def __init__(self, tmp_dir, **env: str):
        self.port = free_port()
        super().__init__(f"http://127.0.0.1:{self.port}/")
        self.var_dir = os.path.join(tmp_dir, "var")
        self.upload_dir = os.path.join(tmp_dir, "uploads")
        self.log_path = os.path.join(tmp_dir, "launcher.log")
        full_env = {key: value for key, value in os.environ.items()
                    if key not in ("REDIS_URL", "SCORER_URL", "API_KEYS")}
        full_env.update(PORT=str(self.port), VAR_DIR=self.var_dir, UPLOAD_DIR=self.upload_dir, **env)
        with open(self.log_path, "ab") as log:
            self.process = spawn([sys.executable, "-m", "src.local.launcher"], cwd=ROOT, env=full_env,
                                 stdout=log, stderr=subprocess.STDOUT)
        self.redis: redis.Redis | None = None

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(lambda: "[make run] ready:" in self.log(), timeout=timeout, step=0.1)
        self.redis = redis.Redis.from_url(self.redis_url())

    def answers(self) -> bool:
        try:
            return self.get(10**17).status_code == 404  # no such task: Redis answered too
        except requests.ConnectionError:
            return False

    def redis_url(self) -> str:
        with open(os.path.join(self.var_dir, "run", "redis.url")) as file:
            return file.read().strip()

    def children(self, command_part: str) -> list[psutil.Process]:
        return [child for child in psutil.Process(self.process.pid).children()
                if command_part in command_line(child)]

    def child(self, command_part: str) -> psutil.Process:
        [child] = self.children(command_part)
        return child

    def scorer(self, endpoint: str, **settings) -> requests.Response:
        """A call to a control endpoint of the simulator the launcher started: GET, or POST
        with `settings` (and for the endpoints that only take POST: `_forget`, `_reset`)."""
        port = self.child("src.local.simulator").cmdline()[-1]  # `--port N` comes last
        url = f"http://127.0.0.1:{port}/{endpoint}"
        post = settings or endpoint in ("_forget", "_reset")
        answer = requests.post(url, json=settings, timeout=5) if post else requests.get(url, timeout=5)
        answer.raise_for_status()
        return answer

    def served_by(self, path: str = "/healthz", method: str = "GET") -> int:
        """The pid of the web process that answers `method` `path` on a new connection: the
        one holding the other end of it, found while the connection is still open."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as conn:
            conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")
            client = conn.getsockname()
            for web in self.children("wsgi.py"):
                try:
                    if any(c.raddr and tuple(c.raddr) == client for c in web.net_connections("tcp")):
                        return web.pid
                except psutil.Error:
                    pass
        raise AssertionError("no web process holds the connection")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as file:
            return file.read()


def command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # dead, not yet reaped by the launcher
        return ""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
