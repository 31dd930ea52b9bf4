"""DELETE /?task_id=N: remove a task, cancel its jobs, let go of its files."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from src.handlers.answers import not_found, task_id_from
from src.tasks import lifecycle
from src.web.context import Context
from src.web.errors import json_response


def handle(ctx: Context, request: Request, user: str) -> Response:
    task_id = task_id_from(request)
    owner = "" if ctx.open_mode else user
    if lifecycle.delete_task(ctx.store, ctx.storage, task_id, owner) is None:
        return not_found(task_id)
    return json_response({"status": "deleted", "task": task_id, "result": None})
