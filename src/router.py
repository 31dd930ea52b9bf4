"""The one entry point, `/`, dispatched by method to a handler."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from . import auth
from .context import Context
from .errors import ApiError
from .handlers import create, delete, status

HANDLERS = {
    "GET": status.handle,
    "HEAD": status.handle,
    "POST": create.handle,
    "DELETE": delete.handle,
}
ALLOW = ", ".join(HANDLERS)


def dispatch(ctx: Context, request: Request) -> Response:
    if request.path != "/":
        raise ApiError(404, "not_found", f"no such path: {request.path}; everything is at /")
    handler = HANDLERS.get(request.method)
    if handler is None:
        raise ApiError(405, "method_not_allowed", f"{request.method} is not allowed on /",
                       headers={"Allow": ALLOW})
    user = auth.identify(request, ctx.settings.api_keys)
    return handler(ctx, request, user)
