"""The one entry point, `/`, dispatched by method to a handler; and the resized images under
`/files/`, which need no API key (their URLs are the key). The page for people (`GET /` when
a browser asks for HTML, and `/page/…`) and the operators' paths need no API key either."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from src.handlers import create, delete, files, health, metrics, page, status
from src.tasks import results
from src.web import auth
from src.web.context import Context
from src.web.errors import ApiError

HANDLERS = {
    "GET": status.handle,
    "HEAD": status.handle,
    "POST": create.handle,
    "DELETE": delete.handle,
}
READ_ONLY = ("GET", "HEAD")
OPERATOR_PATHS = {"/healthz": health.live, "/readyz": health.ready, "/metrics": metrics.handle}


def dispatch(ctx: Context, request: Request) -> Response:
    if request.path.startswith(results.URL_PREFIX):
        _allow(request, READ_ONLY)
        return files.handle(ctx, request, request.path[len(results.URL_PREFIX):])
    if request.path in OPERATOR_PATHS:
        _allow(request, READ_ONLY)
        return OPERATOR_PATHS[request.path](ctx, request)
    if request.path.startswith(page.URL_PREFIX):
        _allow(request, READ_ONLY)
        return page.asset(ctx, request, request.path[len(page.URL_PREFIX):])
    if request.path == "/" and page.wanted(request):
        return page.index(ctx, request)
    user = auth.identify(request, ctx.settings.api_keys)  # before 404 and 405: every other request needs it
    if request.path != "/":
        raise ApiError(404, "not_found", "no such path; everything is at /")
    _allow(request, tuple(HANDLERS))
    return HANDLERS[request.method](ctx, request, user)


def _allow(request: Request, methods: tuple[str, ...]) -> None:
    if request.method not in methods:
        raise ApiError(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}",
                       headers={"Allow": ", ".join(methods)})
