"""The web process's access log: one line per answer, whatever the client sent.

Everything a client controls is logged as it came (the raw, still percent-encoded request
target) with control characters and backslashes escaped, so no request can forge a line.

The web process's log lines are written in batches (`start_logging`). A handler that writes
each line itself holds its lock through every write, and request threads queue on it; one
that hands each line to a writer thread wakes that thread for every request. Under load
either costs a GET more CPU than the rest of the request (bench/http_load.py): every wake-up
and every write hands Python's lock between threads. Here a request thread only formats its
line and appends it to a list; a writer thread writes what has gathered every
`FLUSH_INTERVAL`, in one write. A warning or an error is written at once, with the lines
before it.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
from urllib.parse import quote

log = logging.getLogger("photo_tasks")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FLUSH_INTERVAL = 0.1


class BatchedLines(logging.Handler):
    """Lines gathered by any thread, written to `stream` by one thread every `interval`
    seconds and when a warning or worse arrives; `logging.shutdown` (at exit) writes the
    rest. Lines still gathered when the process is killed outright are lost, as are the
    answers in hand."""

    def __init__(self, stream, interval: float = FLUSH_INTERVAL):
        super().__init__()
        self.stream = stream
        self.interval = interval
        self.lines: collections.deque[str] = collections.deque()
        self.writing = threading.Lock()
        self.closed = threading.Event()
        threading.Thread(target=self._write_every_interval, name="log-writer", daemon=True).start()

    def createLock(self):
        self.lock = None  # appending to a deque is atomic: no lock for request threads to queue on

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)
        if record.levelno >= logging.WARNING:
            self.flush()

    def flush(self) -> None:
        with self.writing:
            lines = [self.lines.popleft() for _ in range(len(self.lines))]
            if lines:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()

    def close(self) -> None:
        self.closed.set()
        self.flush()
        super().close()

    def _write_every_interval(self) -> None:
        while not self.closed.wait(self.interval):
            self.flush()


def start_logging() -> None:
    """Log at INFO to standard error, in batches. Lines not yet written are written when the
    process exits (SIGTERM included: src/web/graceful_exit.py)."""
    # What a record would otherwise look up at every line and no line of ours shows: the
    # logging HOWTO's "Optimization" settings.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BatchedLines(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


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
    path = quote(environ.get("PATH_INFO", "").encode("latin-1", "replace"), safe="/;=@:,$!*'()")
    return path + (f"?{query}" if query else "")


def escape(text: str) -> str:
    """`text` with every non-printable character and backslash written as an escape."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(char if char.isprintable() and char != "\\" else char.encode("unicode_escape").decode()
                   for char in text)
