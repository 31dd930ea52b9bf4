"""The stand-in for overload127/drf_img_resize (bench/peers/drf_standin/): gunicorn with 2
sync workers serving the Django + DRF project, a Celery worker with a prefork pool of 2,
and a private valkey (the embedded server of our dev venv, on a free port) as Celery's
broker and result backend; all from var/peers/drf/ (bench/peers/requirements-drf.txt).

A client does what the real project's client does: POST task/create/ (multipart width,
height, image), GET task/check/<id>/ every POLL seconds until the task is SUCCESS, then GET
the image's URL. A burst's end is the last task's `date_done` in Celery's result backend."""

from __future__ import annotations

import datetime
import json
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import http_load
import psutil
import redis
import requests
from task_cost import tagged

from src.local.embedded_redis import EmbeddedRedis, free_port

from . import BOX, POLL
from .common import HERE, Server, venv, wait_http

PROJECT = os.path.join(HERE, "drf_standin")
API = "api/v1/resize_img/"
FIELDS = {"width": str(BOX), "height": str(BOX)}


class Drf:
    name = "drf"

    def __init__(self, tmp: str, web_workers: int = 2, concurrency: int = 2):
        bin_dir = venv("drf", "requirements-drf.txt")
        self.valkey = EmbeddedRedis(os.path.join(tmp, "valkey"), appendonly=False).start()
        self.redis = redis.Redis(port=self.valkey.port)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        env = {"STANDIN_VAR": os.path.join(tmp, "var"), "STANDIN_REDIS": f"127.0.0.1:{self.valkey.port}",
               "DJANGO_SETTINGS_MODULE": "standin.settings"}
        self.servers = [
            Server([os.path.join(bin_dir, "gunicorn"), "standin.wsgi", "--workers", str(web_workers),
                    "--worker-class", "sync", "--bind", f"127.0.0.1:{port}"],
                   os.path.join(tmp, "gunicorn.log"), cwd=PROJECT, env=env),
            Server([os.path.join(bin_dir, "celery"), "-A", "standin", "worker", "--loglevel", "info", "--pool",
                    "prefork", "--concurrency", str(concurrency), "--logfile", os.path.join(tmp, "celery.log")],
                   os.path.join(tmp, "celery.out"), cwd=PROJECT, env=env),
        ]
        self.local = threading.local()
        self.ready_task: str | None = None
        try:
            wait_http(f"{self.url}{API}task/check/none/", self.servers, status=400)  # an unknown task: 400
        except BaseException:
            self.stop()
            raise

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def processes(self) -> list[psutil.Process]:
        return [psutil.Process(self.valkey.process.pid), *(p for server in self.servers for p in server.tree())]

    def create(self, photo: bytes) -> str:
        answer = self.session().post(self.url + API + "task/create/", data=FIELDS,
                                     files={"image": ("p.jpg", photo, "image/jpeg")}, timeout=120)
        assert answer.status_code == 201, answer.text
        return answer.json()["task_id"]

    def one_client(self, photo: bytes) -> float:
        started = time.perf_counter()
        task = self.create(photo)
        deadline = time.monotonic() + 60
        while True:
            answer = self.session().get(f"{self.url}{API}task/check/{task}/", timeout=60)
            assert answer.status_code == 200, f"check: {answer.status_code} (see {self.servers[0].log.name})"
            state = answer.json()
            if state["task_status"] == "SUCCESS":
                break
            assert state["status"] == "SUCCESS" and time.monotonic() < deadline, state
            time.sleep(POLL)
        image = self.session().get(self.url.rstrip("/") + state["image"], timeout=60)
        assert image.status_code == 200 and image.content[:2] == b"\xff\xd8", image.status_code
        self.ready_task = self.ready_task or task
        return (time.perf_counter() - started) * 1000

    def burst(self, jpeg: bytes, count: int, clients: int) -> float:
        run = secrets.token_hex(4)
        started = time.time()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            tasks = list(pool.map(lambda n: self.create(tagged(jpeg, f"{run}-{n}")), range(count)))
        return count / (self.last_done(tasks) - started)

    def last_done(self, tasks: list[str], timeout: float = 600) -> float:
        """Wait until every task has succeeded; when the last one was done (epoch seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            metas = [json.loads(meta) if meta else None
                     for meta in self.redis.mget([f"celery-task-meta-{task}" for task in tasks])]
            if all(meta and meta["status"] == "SUCCESS" for meta in metas):
                assert all(meta["result"] for meta in metas), "a resize failed"
                done = max(datetime.datetime.fromisoformat(meta["date_done"]) for meta in metas)
                return done.replace(tzinfo=datetime.UTC).timestamp()  # Celery's utcnow()
            assert time.monotonic() < deadline, f"not all of {len(tasks)} tasks done after {timeout} s"
            time.sleep(0.2)

    def get_target(self) -> tuple[str, str]:
        return f"{self.url}{API}task/check/{self.ready_task}/", "200 SUCCESS"

    def post_target(self, folder: str):
        body = http_load.Body(http_load.photo(), folder, fields=FIELDS, file_field="image", filename="p.jpg")
        return self.url + API + "task/create/", body, "201 SUCCESS"

    def png(self, photo: bytes) -> None:
        return None  # the real project writes the format the upload came in

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.valkey.stop()
