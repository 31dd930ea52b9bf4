"""The JSON answers about one task, shared by the handlers."""

from __future__ import annotations

import math
import re

from werkzeug.wrappers import Request, Response

from src.tasks.answer import task_body
from src.web.context import Context
from src.web.errors import ApiError, json_response

_TASK_ID = re.compile(r"[0-9]{1,18}")


def task_id_from(request: Request) -> int:
    """`task_id`: a positive integer of at most 18 ASCII digits, given once."""
    values = request.args.getlist("task_id")
    if len(values) != 1 or not _TASK_ID.fullmatch(values[0]) or int(values[0]) == 0:
        raise ApiError(400, "invalid_task_id", "task_id must be a positive integer of at most 18 digits",
                       "task_id")
    return int(values[0])


def find_task(ctx: Context, task_id: int, user: str) -> dict | None:
    """The task as `user` may see it: another user's task does not exist for them."""
    task = ctx.store.get(task_id)
    if task is None or not (ctx.open_mode or task.get("owner") == user):
        return None
    return task


def not_found(task_id: int) -> Response:
    return json_response({"status": "not_found", "task": task_id, "result": None}, 404)


def location(task_id: int) -> dict[str, str]:
    return {"Location": f"/?task_id={task_id}"}


def task_answer(ctx: Context, task_id: int, task: dict) -> Response:
    """GET's answer: wait (202 with Retry-After), ready or failed (200)."""
    callbacks = ctx.store.callbacks(task_id) if task.get("callbacks") else None
    body = task_body(task_id, task, callbacks)
    if body["status"] == "wait":
        return json_response(body, 202, {"Retry-After": _retry_after(ctx, task["kind"])})
    return json_response(body, 200)


def _retry_after(ctx: Context, kind: str) -> str:
    """When to ask again: a resize takes about a second, a scoring task polls the scorer."""
    if kind == "resize":
        return "1"
    return str(max(1, math.ceil(ctx.settings.scorer_retry_delay)))
