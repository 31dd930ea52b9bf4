"""Held answers (`Prefer: wait=N`, RFC 7240) in one web process.

A request that asks for it is held until its task ends or N seconds pass (N at most
WAIT_MAX), in ONE blocking Redis call on a list of its own that the script ending or deleting
the task pushes to (src/store.py, `Waits`), so it answers within a Redis round trip of the end.
At most WAIT_SLOTS answers are held at once; past that the preference is ignored. Held
answers block in Redis, on connections of their own (the web's client has a short read
timeout), on threads of their own: waitress gets WAIT_SLOTS threads more than it serves
other requests with (src/web/server.py). A process that stops wakes the ones it holds
(`release_everywhere`, called on SIGTERM), so they answer at once.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import uuid
import weakref

import redis
from werkzeug.http import parse_list_header
from werkzeug.wrappers import Request

from src.settings import Settings
from src.store import PREFIX, Waits, connect_blocking

log = logging.getLogger("photo_tasks")

_SECONDS = re.compile(r"[0-9]{1,9}")
_EVERY: weakref.WeakSet[HeldAnswers] = weakref.WeakSet()  # this process's, for release_everywhere


def wanted_wait(request: Request) -> int:
    """The seconds of the request's `Prefer: wait=N` (RFC 7240: among other preferences and
    their parameters, in one or more Prefer headers, N quoted or not; the first `wait`
    counts); 0 when there is none or N is not whole seconds."""
    for header in request.headers.getlist("Prefer"):
        for preference in parse_list_header(header):
            name, _, value = preference.split(";", 1)[0].partition("=")
            if name.strip().lower() != "wait":
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return int(value) if _SECONDS.fullmatch(value) else 0
    return 0


class HeldAnswers:
    """The answers this process holds: its WAIT_SLOTS slots and its waiters' lists."""

    def __init__(self, settings: Settings, client: redis.Redis):
        self.wait_max = settings.wait_max
        self._slots = threading.BoundedSemaphore(settings.wait_slots) if settings.wait_slots else None
        blocking = connect_blocking(settings.redis_url, settings.wait_max, settings.wait_slots)
        self.waits = Waits(client, blocking)
        self._name = f"{PREFIX}wait:{uuid.uuid4().hex[:16]}:"
        self._numbers = itertools.count()
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = False
        _EVERY.add(self)

    def hold(self, task_id: int, seconds: int) -> int:
        """Hold the caller until the task ends (or goes) or `seconds` pass, cut to WAIT_MAX.
        Returns the seconds applied, or 0 when not held: none asked, no slot free, or this
        process is stopping."""
        seconds = min(seconds, self.wait_max)
        if seconds <= 0 or self._stopping or self._slots is None or not self._slots.acquire(blocking=False):
            return 0
        waiter = self._name + str(next(self._numbers))
        try:
            with self._lock:
                self._held.add(waiter)
                if self._stopping:  # release_all has been and gone: it did not see this one
                    return seconds
            if self.waits.listen(task_id, waiter, seconds) and not self.waits.wait(waiter, seconds):
                self.waits.stop_listening(task_id, waiter)  # timed out (an end takes the set with it)
            return seconds
        finally:
            with self._lock:
                self._held.discard(waiter)
            self._slots.release()

    def release_all(self) -> None:
        """Answer every held request at once, and hold no more: the process is stopping."""
        self._stopping = True
        with self._lock:
            waiters = list(self._held)
        if waiters:
            self.waits.wake(waiters)


def release_everywhere() -> None:
    """Every held answer of this process answers at once, and no more are held."""
    for held in list(_EVERY):
        try:
            held.release_all()
        except redis.RedisError as error:  # their own calls fail too, and answer
            log.warning("could not wake the held answers: %s", error)
