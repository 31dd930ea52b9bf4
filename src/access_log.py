"""The web process's access log: one line per answer, whatever the client sent.

Everything a client controls is logged as it came (the raw, still percent-encoded request
target) with control characters and backslashes escaped, so no request can forge a line.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

log = logging.getLogger("photo_tasks")


def log_answer(request_id: str, client: str, method: str, target: str, status: int, seconds: float) -> None:
    log.info("%s %s %s %s -> %d in %.1f ms", request_id, escape(client), escape(method), escape(target),
             status, seconds * 1000)


def raw_target(environ: dict) -> str:
    """The request target as the client sent it: waitress's REQUEST_URI (gunicorn's
    RAW_URI), or the path re-quoted with the query when the server gives neither."""
    target = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if target:
        return target
    query = environ.get("QUERY_STRING", "")
    return quote(environ.get("PATH_INFO", "").encode("latin-1", "replace"), safe="/;=@:,$!*'()") + (f"?{query}" if query else "")


def escape(text: str) -> str:
    """`text` with every non-printable character and backslash written as an escape."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(char if char.isprintable() and char != "\\" else char.encode("unicode_escape").decode()
                   for char in text)
