"""GET /?task_id=N: a task's state."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from src.handlers.answers import find_task, not_found, task_answer, task_id_from
from src.handlers.held import held_answer
from src.store import WAITING
from src.tasks import lifecycle
from src.web.context import Context


def handle(ctx: Context, request: Request, user: str) -> Response:
    task_id = task_id_from(request)
    task = find_task(ctx, task_id, user)
    if task is None:
        return not_found(task_id)
    if lifecycle.fail_overdue(ctx.store, task_id, task, ctx.settings.scorer_deadline):
        task = find_task(ctx, task_id, user) or task  # the deadline is a promise, not a check in a job
    if task["state"] in WAITING:  # Prefer: wait may hold the answer until it ends
        return held_answer(ctx, request, user, task_id) or task_answer(ctx, task_id, task)
    return task_answer(ctx, task_id, task)
