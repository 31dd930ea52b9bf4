"""What a GET of a task answers, as a dict: shared by the web (GET's body) and the callback
deliverer (a callback's `data`), so both always say the same."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime

from src.store import FAILED, READY


def task_body(task_id: int, task: dict, callbacks: list[dict] | None = None) -> dict:
    """The body of GET /?task_id=N for `task` (its hash): wait, ready or failed; with the
    task's `callbacks` when it has any."""
    body = {"status": "wait", "task": task_id, "result": None, "progress": min(int(task["progress"]), 99),
            "kind": task["kind"], "created_at": iso(task["created_at"]), "updated_at": iso(task["updated_at"])}
    if task["state"] == READY:
        body.update(status="ready", result=json.loads(task["result"]), progress=100)
    elif task["state"] == FAILED:
        body.update(status="failed", progress=100,
                    error={"code": task["error_code"], "message": task["error_message"]})
    if callbacks:
        body["callbacks"] = callbacks
    return body


@functools.lru_cache(maxsize=4096)  # a task's times are asked for at every poll
def iso(timestamp: str) -> str:
    """A Unix time (as stored) in ISO 8601, UTC, to the millisecond."""
    moment = datetime.fromtimestamp(float(timestamp), tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
