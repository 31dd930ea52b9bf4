"""The web process's access log: one line per answer, whatever the client sent.

Everything a client controls is logged as it came (the raw, still percent-encoded request
target) with control characters and backslashes escaped, so no request can forge a line.

The web process's log lines are written by one thread of their own (`start_logging`): a
handler that writes to its stream itself holds its lock through every write, and under load
the request threads queue on that lock, which cost a GET more than half its CPU time
(bench/http_load.py). Through a queue, a request thread only appends its record.
"""

from __future__ import annotations

import atexit
import logging
import queue
from logging.handlers import QueueHandler, QueueListener
from urllib.parse import quote

log = logging.getLogger("photo_tasks")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def start_logging() -> None:
    """Log at INFO to standard error, through a queue and a writing thread. Lines still in
    the queue are written when the process exits (SIGTERM included: src/graceful_exit.py);
    only a process killed outright loses them, as it loses the answers in hand."""
    writer = logging.StreamHandler()
    writer.setFormatter(logging.Formatter(FORMAT))
    records: queue.SimpleQueue = queue.SimpleQueue()
    listener = QueueListener(records, writer)
    enqueue = QueueHandler(records)
    enqueue.setFormatter(logging.Formatter("%(message)s"))  # the writer's formatter makes the line
    logging.basicConfig(level=logging.INFO, handlers=[enqueue])
    listener.start()
    atexit.register(listener.stop)


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
