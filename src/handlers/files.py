"""GET /files/<name>: a resized image, to anyone who holds its unguessable URL.

werkzeug serves the file: Content-Type, ETag with 304 on If-None-Match, Range requests and
Last-Modified. The bytes behind a name never change, so clients may keep them for a year;
`private` keeps shared caches out, so a DELETE really makes the image unreachable.
"""

from __future__ import annotations

from werkzeug.exceptions import NotFound
from werkzeug.utils import send_from_directory
from werkzeug.wrappers import Request, Response

from .. import results
from ..context import Context
from ..errors import ApiError

ONE_YEAR = 365 * 24 * 3600


def handle(ctx: Context, request: Request, name: str) -> Response:
    if not results.NAME.fullmatch(name):
        raise _gone()
    try:
        response = send_from_directory(results.results_dir(ctx.settings.upload_dir), name, request.environ,
                                       mimetype=results.mime_type(name), max_age=ONE_YEAR, etag=True)
    except NotFound:
        raise _gone() from None
    response.cache_control.public = False
    response.cache_control.private = True
    response.cache_control.immutable = True
    return response


def _gone() -> ApiError:
    return ApiError(404, "not_found", "no such file (it may have been deleted)")
