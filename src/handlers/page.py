"""The page for people: `GET /` when a browser asks for HTML, and its files under `/page/`.

Served from `src/web/page/` by werkzeug, without an API key (the page asks for the key and sends
it with its own API calls). The page loads nothing from any other host, and its
Content-Security-Policy says so to the browser.
"""

from __future__ import annotations

import os

from werkzeug.exceptions import NotFound
from werkzeug.utils import send_from_directory
from werkzeug.wrappers import Request, Response

from src.web.context import Context
from src.web.errors import ApiError

URL_PREFIX = "/page/"
PAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web", "page")
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
          "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def wanted(request: Request) -> bool:
    """A browser's GET / without task_id: it prefers HTML to JSON (a tie goes to JSON, so
    `Accept: */*` and API clients still get the API's answer)."""
    return (request.method in ("GET", "HEAD") and "task_id" not in request.args
            and request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html")


def index(ctx: Context, request: Request) -> Response:
    response = _send(request, "index.html")
    response.headers["Vary"] = "Accept"  # the same URL answers JSON to API clients
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def asset(ctx: Context, request: Request, name: str) -> Response:
    if name == "index.html":
        raise _missing(name)
    return _send(request, name)


def _send(request: Request, name: str) -> Response:
    """A file of the page; revalidated on each load (ETag), so a new version shows at once."""
    try:
        response = send_from_directory(PAGE_DIR, name, request.environ, max_age=0, etag=True)
    except NotFound:
        raise _missing(name) from None
    response.cache_control.no_cache = True
    return response


def _missing(name: str) -> ApiError:
    return ApiError(404, "not_found", f"no such file of the page: {name}")
