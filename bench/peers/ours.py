"""Our service, as bench/task_cost.py runs it (`python -m src.local.launcher`, its embedded
valkey, WORKERS workers), driven by task_cost's own clients."""

from __future__ import annotations

import time

import http_load
import psutil
import requests
import task_cost

from . import BOX, POLL

FIELDS = {"width": str(BOX), "height": str(BOX), "format": "jpeg"}


class Ours:
    name = "ours"

    def __init__(self, root: str, tmp: str, workers: int):
        # One client sends every task: the per-user and queue limits off (docs/fair-sharing.md);
        # a full run stores more than a user's 5 GiB.
        limits_off = {"USER_MAX_WAITING": "0", "QUEUE_MAX": "0", "USER_MAX_STORED_BYTES": "0"}
        self.stack = task_cost.Stack("ours", root, tmp, workers, limits_off)
        self.session = requests.Session()
        self.ready_task: int | None = None

    def processes(self) -> list[psutil.Process]:
        return self.stack.processes()

    def one_client(self, photo: bytes) -> float:
        timings = task_cost.one_task(self.session, self.stack, photo, POLL)
        self.ready_task = self.ready_task or timings["task"]
        return timings["total"]

    def one_client_waiting(self, photo: bytes) -> float:
        """Upload → bytes in hand as our users can have it: one POST with `Prefer: wait`,
        answered when the task is done, then the GET of the result."""
        started = time.perf_counter()
        answer = self.session.post(self.stack.url, files={"photo": ("p.jpg", photo, "image/jpeg")}, data=FIELDS,
                                   headers={"Prefer": "wait=30"}, timeout=60)
        assert answer.status_code == 200 and answer.json()["status"] == "ready", answer.text
        result = answer.json()["result"]
        image = self.session.get(self.stack.url.rstrip("/") + result["url"], timeout=60)
        assert image.status_code == 200 and len(image.content) == result["bytes"]
        return (time.perf_counter() - started) * 1000

    def burst(self, jpeg: bytes, count: int, clients: int) -> float:
        return task_cost.burst(self.stack, jpeg, count, clients)["tasks/s"]

    def get_target(self) -> tuple[str, str]:
        return f"{self.stack.url}?task_id={self.ready_task}", "200 ready"

    def post_target(self, folder: str):
        body = http_load.Body(http_load.photo(), folder, fields=FIELDS, file_field="photo", filename="p.jpg")
        return self.stack.url, body, "202 received"

    def png(self, photo: bytes) -> bytes:
        task = task_cost.one_task(self.session, self.stack, photo, POLL, {**FIELDS, "format": "png"})["task"]
        state = self.session.get(self.stack.url, params={"task_id": task}, timeout=60).json()
        return self.session.get(self.stack.url.rstrip("/") + state["result"]["url"], timeout=60).content

    def stop(self) -> None:
        self.session.close()
        self.stack.stop()
