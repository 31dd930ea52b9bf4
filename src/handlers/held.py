"""`Prefer: wait=N` on GET and POST: the answer held until the task ends or N seconds pass,
then given as a GET would give it at that moment (src/web/waiting.py holds it)."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from src.handlers.answers import find_task, location, not_found, task_answer
from src.web.context import Context
from src.web.waiting import wanted_wait


def held_answer(ctx: Context, request: Request, user: str, task_id: int) -> Response | None:
    """The answer about a waiting task once the request's `Prefer: wait` has been applied,
    with `Preference-Applied`; None when it is not (none asked, no slot free)."""
    seconds = ctx.held.hold(task_id, wanted_wait(request))
    if not seconds:
        return None
    task = find_task(ctx, task_id, user)
    response = not_found(task_id) if task is None else task_answer(ctx, task_id, task)
    response.headers["Preference-Applied"] = f"wait={seconds}"
    return response


def held_post_answer(ctx: Context, request: Request, user: str, response: Response) -> Response:
    """POST's answer: one that says its task runs (202 with `Location`: new, or joined by
    dedupe) is held as GET's would be; any other is given as it is."""
    target = response.headers.get("Location", "")
    if response.status_code != 202 or not target.startswith("/?task_id="):
        return response
    task_id = int(target[len("/?task_id="):])
    held = held_answer(ctx, request, user, task_id)
    if held is None:
        return response
    if held.status_code == 202:  # still running
        held.headers.update(location(task_id))
    return held
