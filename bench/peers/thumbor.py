"""thumbor 7.8.0 (var/peers/thumbor/, bench/peers/requirements-thumbor.txt) with its PIL
engine, `--processes 2`, configured by bench/peers/thumbor.conf to load originals from a
local folder and to store nothing.

A resize is synchronous: the client writes the photo into thumbor's folder (its "upload",
inside the time measured) and GETs /unsafe/fit-in/800x800/<file>, the JPEG in the answer.
thumbor thus receives no upload over HTTP, where ours and the stand-in parse a multipart
body: its times hold a file write instead."""

from __future__ import annotations

import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import requests
from task_cost import tagged

from src.local.embedded_redis import free_port

from . import BOX
from .common import HERE, Server, venv, wait_http


class Thumbor:
    name = "thumbor"

    def __init__(self, tmp: str, processes: int = 2):
        bin_dir = venv("thumbor", "requirements-thumbor.txt")
        self.originals = os.path.join(tmp, "originals")
        os.makedirs(self.originals)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        self.server = Server([os.path.join(bin_dir, "thumbor"), "--port", str(port), "--ip", "127.0.0.1",
                              "--conf", os.path.join(HERE, "thumbor.conf"), "--processes", str(processes),
                              "--log-level", "warning"],
                             os.path.join(tmp, "thumbor.log"), cwd=tmp, env={"THUMBOR_ROOT": self.originals})
        self.local = threading.local()
        try:
            wait_http(self.url + "healthcheck", [self.server])
        except BaseException:
            self.server.stop()
            raise

    def processes(self) -> list[psutil.Process]:
        return self.server.tree()

    def resized(self, photo: bytes, filters: str = "") -> bytes:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        name = secrets.token_hex(8) + ".jpg"
        path = os.path.join(self.originals, name)
        with open(path, "wb") as file:
            file.write(photo)
        answer = self.local.session.get(f"{self.url}unsafe/fit-in/{BOX}x{BOX}/{filters}{name}", timeout=120)
        assert answer.status_code == 200, answer.status_code
        os.remove(path)
        return answer.content

    def one_client(self, photo: bytes) -> float:
        started = time.perf_counter()
        assert self.resized(photo)[:2] == b"\xff\xd8"
        return (time.perf_counter() - started) * 1000

    def burst(self, jpeg: bytes, count: int, clients: int) -> float:
        run = secrets.token_hex(4)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(lambda n: self.resized(tagged(jpeg, f"{run}-{n}")), range(count)))
        return count / (time.perf_counter() - started)

    def get_target(self) -> None:
        return None  # no tasks: every GET resizes

    def post_target(self, folder: str) -> None:
        return None

    def png(self, photo: bytes) -> bytes:
        return self.resized(photo, "filters:format(png)/")

    def stop(self) -> None:
        self.server.stop()
