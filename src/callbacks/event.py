"""The body of a callback: `{"type": "task.ready" | "task.failed", "timestamp": <the task's end,
ISO 8601 UTC>, "data": <what a GET of the task answers>}`.

`data` leaves out GET's `callbacks` list: a receiver is not told the other URLs the task
calls (they may carry tokens of their own), nor states that change while it is delivered.
The body is the same on every attempt (only `webhook-timestamp` and the signature change).
"""

from __future__ import annotations

import json

from src.store import READY
from src.tasks.answer import iso, task_body


def event_type(task: dict) -> str:
    return "task.ready" if task["state"] == READY else "task.failed"


def body(task_id: int, task: dict) -> bytes:
    event = {"type": event_type(task), "timestamp": iso(task.get("finished_at") or task["updated_at"]),
             "data": task_body(task_id, task)}
    return json.dumps(event, separators=(",", ":")).encode()
