"""The service as a user meets it: the web app under waitress on a free port and real RQ
workers as subprocesses, plus small helpers. Shared by the tests and the benchmarks."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import threading
import time

import psutil
import redis
import requests
import waitress
from PIL import Image

from src.app import WAITRESS_OPTIONS, create_app
from src.embedded_redis import free_port
from src.processes import spawn
from src.settings import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Client:
    """Requests to the service at `url`, as a user sends them."""

    def __init__(self, url: str):
        self.url = url

    def post(self, photo: bytes | None = None, filename: str = "face.jpg", content_type: str = "image/jpeg",
             headers: dict | None = None, **fields) -> requests.Response:
        """A multipart POST: the text fields, and the photo as a file part when given."""
        parts = {key: (None, str(value)) for key, value in fields.items()}
        if photo is not None:
            parts["photo"] = (filename, photo, content_type)
        return requests.post(self.url, files=parts, headers=headers, timeout=10)

    def get(self, task_id, headers: dict | None = None) -> requests.Response:
        return requests.get(self.url, params={"task_id": task_id}, headers=headers, timeout=10)

    def delete(self, task_id, headers: dict | None = None) -> requests.Response:
        return requests.delete(self.url, params={"task_id": task_id}, headers=headers, timeout=10)

    def fetch(self, path: str, method: str = "GET", headers: dict | None = None) -> requests.Response:
        """A request for another path on the server, such as a result's URL."""
        return requests.request(method, self.url.rstrip("/") + path, headers=headers, timeout=10)

    def wait_done(self, task_id, timeout: float = 20, headers: dict | None = None) -> requests.Response:
        """Poll GET until the task is no longer waiting."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get(task_id, headers)
            if answer.status_code != 202 or time.monotonic() > deadline:
                return answer
            time.sleep(0.1)


class Service(Client):
    """The web app and its workers, started with the given settings."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.settings = Settings.from_env(env)
        self.server = waitress.create_server(create_app(self.settings), host="127.0.0.1", port=0,
                                             **WAITRESS_OPTIONS)
        super().__init__(f"http://127.0.0.1:{self.server.effective_port}/")
        self.workers: list[subprocess.Popen] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self.server.run()
        except OSError:
            if not self._stopping.is_set():
                raise  # closing the sockets under a running select() is how waitress stops

    def start_workers(self, count: int) -> None:
        """Start `count` RQ workers, and the dispatcher with the first ones."""
        if not self.workers:
            self.workers.append(self._spawn("src.dispatcher"))
        for _ in range(count):
            self.workers.append(self._spawn("src.worker"))

    def _spawn(self, module: str) -> subprocess.Popen:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with open(os.path.join(self.settings.upload_dir, "..", "workers.log"), "ab") as log:
            return spawn([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        self.workers = []

    def stop(self) -> None:
        self.stop_workers()
        self._stopping.set()
        self.server.close()


class Launched(Client):
    """`python -m src.launcher` (what `make run` runs) as a subprocess, with its own VAR_DIR
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
            self.process = spawn([sys.executable, "-m", "src.launcher"], cwd=ROOT, env=full_env,
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
        port = self.child("src.simulator").cmdline()[-1]  # `--port N` comes last
        url = f"http://127.0.0.1:{port}/{endpoint}"
        post = settings or endpoint in ("_forget", "_reset")
        answer = requests.post(url, json=settings, timeout=5) if post else requests.get(url, timeout=5)
        answer.raise_for_status()
        return answer

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


def wait_for(condition, timeout: float = 10, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(step)


def make_photo(seed: int = 0, size=(64, 48), fmt: str = "JPEG") -> bytes:
    """A small real image whose bytes differ with `seed`."""
    image = Image.new("RGB", size, (seed * 37 % 256, seed * 91 % 256, 120))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def noisy_photo(fmt: str, size=(200, 150), seed: int = 0) -> bytes:
    """An image whose pixel data is most of its bytes (it hardly compresses), so its size in
    bytes follows its size in pixels, and cutting it in half cuts the pixels."""
    pixels = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buffer, fmt)
    return buffer.getvalue()


def files_under(path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), path) for d, _, names in os.walk(path) for f in names}


def leftovers(upload_dir) -> set[str]:
    """Files under UPLOAD_DIR apart from the web processes' spool locks (`tmp/*.lock`, there
    while they run)."""
    return {path for path in files_under(upload_dir)
            if not (os.path.dirname(path) == "tmp" and path.endswith(".lock"))}


def assert_error_shape(answer: requests.Response, status: int, field=None) -> dict:
    """The one error shape; `field` a name that must be given, or a tuple of acceptable ones."""
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert "Traceback" not in answer.text
    body = answer.json()
    assert body["status"] == "error"
    assert body["result"] is None
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if isinstance(field, str):
        assert error.get("field") == field, body
    elif field is not None:
        assert error.get("field") in field, body
    return body


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}
