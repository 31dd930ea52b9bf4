"""GET /files/<name>: a resized image, to anyone who holds its unguessable URL.

The storage serves it (src/storage/): Content-Type, ETag with 304 on If-None-Match, a Range
request (one range; several get the whole file) and Last-Modified, from UPLOAD_DIR or
streamed from the object store. The bytes behind a name never change, so clients may keep
them for a year; `private` keeps shared caches out, so a DELETE really makes the image
unreachable.
"""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from src.tasks import results
from src.web.context import Context
from src.web.errors import ApiError


def handle(ctx: Context, request: Request, name: str) -> Response:
    if not results.NAME.fullmatch(name):
        raise _gone()
    response = ctx.storage.serve_result(name, _one_range(request.environ))
    if response is None:
        raise _gone()
    response.cache_control.public = False
    response.cache_control.private = True
    response.cache_control.immutable = True
    return response


def _one_range(environ: dict) -> dict:
    """The request without its Range when it asks for several: werkzeug serves one range
    and answers 416 to more, which would tell the client that none can be served. HTTP lets
    a server ignore a Range; the whole file answers them all."""
    if "," not in environ.get("HTTP_RANGE", ""):
        return environ
    return {name: value for name, value in environ.items() if name != "HTTP_RANGE"}


def _gone() -> ApiError:
    return ApiError(404, "not_found", "no such file (it may have been deleted)")
