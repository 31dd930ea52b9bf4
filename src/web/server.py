"""Serving the app with waitress: its options, and its own answers in the service's shape.

Waitress reads every request in full before the app sees it, so what it refuses never
reaches the app: a body whose Content-Length is over MAX_UPLOAD_BYTES (refused before a byte
of it is read), a chunked body once it passes the limit, and malformed HTTP. Its error pages
are replaced here by the service's JSON error shape, with `X-Request-Id`, `nosniff` and an
access-log line, through waitress's own hooks: the server's `channel_class` and the
channel's `error_task_class`.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import time

from waitress import create_server as create_waitress_server
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import BadRequest, RequestEntityTooLarge

from src.settings import Settings
from src.web.access_log import log_answer
from src.web.app import new_request_id, stamp
from src.web.errors import ApiError, body_too_large

OPTIONS = {
    # Threads for the requests served at once (WEB_THREADS); held answers (Prefer: wait) get
    # WAIT_SLOTS more (see options()): they block in Redis, not on the GIL, and never take these.
    "ident": "photo-tasks",
    # ProxyFix (in create_app) trusts exactly TRUSTED_PROXIES hops of X-Forwarded-*;
    # waitress would strip those headers itself.
    "clear_untrusted_proxy_headers": False,
    # A connection still sending its request costs a socket and a few KiB, not a thread
    # (threads serve complete requests only), so many slow clients may wait at once without
    # shutting others out; poll() because select() stops at file descriptor 1024.
    "connection_limit": 1000,
    "asyncore_use_poll": True,
    "backlog": 1024,
    # A connection silent this long is closed (an idle keep-alive, a stalled upload),
    # looked for every few seconds.
    "channel_timeout": 30,
    "cleanup_interval": 5,
}
# Room for open files beyond the connections (spools, results, Redis, logs).
SPARE_FILES = 200
# How long a stopped server may take to send the answers its last requests wrote.
SEND_LEFT_SECONDS = 2.0

# Waitress's refusals -> our error codes; its own description follows the message.
WAITRESS_ERRORS = {
    400: ("bad_request", "the request is not valid HTTP"),
    431: ("headers_too_large", "the request's headers are too large"),
    500: ("internal_error", "internal error"),
    501: ("not_implemented", "the request's Transfer-Encoding is not supported"),
}


# Set by `make run` (src/local/web_processes.py) for each of its web processes: the file
# descriptors of the listening sockets they share, inherited from it.
LISTEN_FDS = "PHOTO_TASKS_LISTEN_FDS"


def options(settings: Settings) -> dict:
    """Waitress's options for `settings`; it refuses a body of `max_request_body_size`
    bytes or more."""
    return {**OPTIONS, "threads": settings.web_threads + settings.wait_slots,
            "max_request_body_size": settings.max_upload_bytes + 1}


def create_server(app, settings: Settings, port: int | None = None, listeners: dict | None = None):
    """Waitress serving `app` on HOST and PORT (or `port`: 0 picks a free one), or on the
    listening sockets named by $PHOTO_TASKS_LISTEN_FDS when its launcher passed them down,
    with the service's own answers to what waitress refuses; its sockets in `listeners`, when
    given. Call `.run()` to serve."""
    listeners = {} if listeners is None else listeners
    inherited = os.environ.get(LISTEN_FDS, "")
    if inherited and port is None:
        where = {"sockets": [socket.socket(fileno=int(fd)) for fd in inherited.split(",")]}
    else:
        where = {"host": settings.host, "port": settings.port if port is None else port}
    server = create_waitress_server(app, map=listeners, **where, **options(settings))
    for listener in listeners.values():  # one per address HOST resolves to
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = Channel
            listener.web_metrics = _web_metrics(app)
    return server


def _web_metrics(app):
    """The app's request metrics (`src.metrics.web.WebMetrics`), so that the answers waitress
    gives itself are counted with the app's own; None for an app without (bench/'s bare
    apps)."""
    app = getattr(app, "app", app)  # under ProxyFix, the app it wraps
    return getattr(getattr(app, "ctx", None), "metrics", None)


def serve(app, settings: Settings) -> None:
    _allow_open_files(OPTIONS["connection_limit"] + SPARE_FILES)
    # Waitress warns "Task queue depth is N" for every request that waits for a thread: under
    # load, a line per request. The wait shows in the request's time on its access-log line.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    listeners: dict = {}
    server = create_server(app, settings, listeners=listeners)
    server.print_listen("Serving on http://{}:{}")
    server.run()
    _send_what_is_left(listeners, SEND_LEFT_SECONDS)


def _send_what_is_left(listeners: dict, seconds: float) -> None:
    """Once stopped, send the answers the last requests wrote (held answers released by
    SIGTERM among them): waitress's threads write to a buffer that its serving loop, stopped
    by then, sends. No new connection is taken meanwhile."""
    deadline = time.monotonic() + seconds
    for listener in listeners.values():
        if isinstance(listener, BaseWSGIServer):
            listener.accepting = False
    while time.monotonic() < deadline and any(
            isinstance(channel, HTTPChannel) and channel.connected and channel.total_outbufs_len
            for channel in listeners.values()):
        wasyncore.loop(timeout=0.05, map=listeners, use_poll=True, count=1)


class JsonErrorTask(ErrorTask):
    """Waitress's answer to a request it refused, in the service's error shape."""

    def execute(self):
        error = self.request.error
        request_id = new_request_id()
        response = stamp(_api_error(error, self.channel.adj).response(), request_id)
        body = response.get_data()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend(response.headers.to_wsgi_list())
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
        method, seconds = getattr(self.request, "command", None) or "-", time.time() - self.start_time
        log_answer(request_id, self.channel.addr[0], method, getattr(self.request, "request_uri", "-"),
                   error.code, seconds)
        if self.channel.server.web_metrics is not None:
            self.channel.server.web_metrics.count_request(method, error.code, seconds)


class RequestParser(HTTPRequestParser):
    """Waitress's parser, but a chunked body is held to the limit by its own bytes. Waitress
    counts the chunked framing too (each chunk's size line and line ends), so a body of
    MAX_UPLOAD_BYTES, or somewhat less in small chunks, got 413. The framing has a bound of
    its own, as large, so a client still cannot send without end."""

    def received(self, data):
        body = self.body_rcv
        if body is None or not self.chunked or self.completed:
            return super().received(data)
        consumed = body.received(data)
        self.body_bytes_received += consumed  # the body with its framing
        limit = self.adj.max_request_body_size
        if len(body) >= limit:
            self.error = RequestEntityTooLarge(f"exceeds max_body of {limit}")
            self.completed = True
        elif self.body_bytes_received - len(body) >= limit:
            self.error = BadRequest(f"the chunked encoding's framing passes {limit} bytes")
            self.completed = True
        elif body.error:
            self.error = body.error
            self.completed = True
        elif body.completed:
            self.completed = True
            self.headers["CONTENT_LENGTH"] = str(len(body))
        return consumed


class Channel(HTTPChannel):
    error_task_class = JsonErrorTask
    parser_class = RequestParser

    def send_continue(self):
        """Never invite a body already refused (`Expect: 100-continue` with a Content-Length
        over the limit): waitress would, and read it up to the limit before answering."""
        if self.request.error is None:
            super().send_continue()
        else:
            self.request.expect_continue = False


def _api_error(error, adjustments) -> ApiError:
    if error.code == 413:
        return body_too_large(adjustments.max_request_body_size - 1)
    code, message = WAITRESS_ERRORS.get(error.code, WAITRESS_ERRORS[400])
    return ApiError(error.code, code, f"{message}: {error.body}")


def _allow_open_files(wanted: int) -> None:
    """Raise this process's soft limit on open files towards `wanted` (within the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
