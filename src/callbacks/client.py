"""One callback attempt over HTTP(S), to a checked address only.

Each attempt resolves the URL's host once and checks every address it resolves to
(src/callbacks/urls.py), then connects to the first one: the connection pool is built for
that IP, with the URL's host kept as the `Host` header and, for https, as the TLS server
name (SNI) and the name the certificate must carry. So a name that resolves elsewhere between
the check and the connection (DNS rebinding) is never followed. Redirects are never followed,
and nothing is retried here: the schedule (src/callbacks/rules.py) decides.

WEBHOOK_TIMEOUT bounds the whole attempt, however the receiver answers: urllib3's timeouts
bound each read, so a receiver dripping its answer a byte at a time could hold a call far
longer; a watchdog cuts the connection (shuts its socket down) when the attempt's time is up.

Pools are kept per (scheme, address, port, host), at most MAX_POOLS of them, so calls to the
same receiver reuse their connections; urllib3's pools are thread-safe.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import certifi
import urllib3

from src.callbacks import urls

MAX_POOLS = 256
CONNECTIONS_PER_POOL = 16  # as many as the deliverer sends one receiver at once (PER_RECEIVER)
MAX_BODY = 65536  # bytes of a receiver's answer read (the rest is not wanted)
USER_AGENT = "photo-tasks-callbacks/1"


_deadline = threading.local()  # when the attempt this thread is making must end (monotonic)


def _cut(sock: socket.socket, cut: threading.Event) -> None:
    cut.set()
    try:
        sock.shutdown(socket.SHUT_RDWR)  # a read blocked on it returns at once
    except OSError:
        pass  # closed already


class _Watched:
    """A connection whose answer is cut off at the attempt's deadline."""

    watchdog: threading.Timer | None = None
    cut: threading.Event | None = None  # set when the watchdog cut the answer off

    def getresponse(self, *args, **kwargs):
        at = getattr(_deadline, "at", None)
        if at is not None and self.sock is not None:
            self.cut = threading.Event()
            self.watchdog = threading.Timer(max(0.0, at - time.monotonic()), _cut, (self.sock, self.cut))
            self.watchdog.daemon = True
            self.watchdog.start()
        return super().getresponse(*args, **kwargs)


class _HTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


@dataclass(frozen=True)
class Outcome:
    status: int | None  # the HTTP status, or None when there was no answer
    retry_after: str | None = None
    error: str = ""  # why there was no answer


class CallbackClient:
    def __init__(self, timeout: float, allow_private: bool):
        self.seconds = timeout
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout, total=timeout)
        self.allow_private = allow_private
        self._pools: OrderedDict[tuple, urllib3.HTTPConnectionPool] = OrderedDict()
        self._lock = threading.Lock()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        _deadline.at = time.monotonic() + self.seconds
        try:
            return self._post(url, body, headers)
        finally:
            _deadline.at = None

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            target = urls.parse(url)
            address = urls.checked_addresses(target, self.allow_private)[0]
        except urls.RefusedUrl as refused:
            return Outcome(None, error=str(refused))
        pool = self._pool(target, address)
        headers = {**headers, "Host": target.netloc, "User-Agent": USER_AGENT}
        try:
            answer = pool.urlopen("POST", target.path, body=body, headers=headers, redirect=False, retries=False,
                                  timeout=self.timeout, preload_content=False, assert_same_host=False)
        except urllib3.exceptions.HTTPError as exc:
            return Outcome(None, error=f"{type(exc).__name__}: {exc}")
        connection = answer.connection  # before the read, which may hand it back to the pool
        try:
            whole = len(answer.read(MAX_BODY)) < MAX_BODY  # read to its end: the connection may be reused
        except (urllib3.exceptions.HTTPError, OSError):
            whole = False  # the status is what counts
        if connection is not None and connection.watchdog is not None:
            connection.watchdog.cancel()
        cut = connection is not None and connection.cut is not None and connection.cut.is_set()
        if whole and not cut:
            answer.release_conn()
        else:
            answer.close()
        if cut:  # what came may be any part of the answer: none
            return Outcome(None, error=f"no whole answer within {self.seconds:g} s")
        return Outcome(answer.status, answer.headers.get("Retry-After"))

    def _pool(self, target: urls.Target, address: str) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, address, target.port, target.host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            if target.scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    address, target.port, maxsize=CONNECTIONS_PER_POOL, block=False, retries=False,
                    server_hostname=target.host, assert_hostname=target.host,
                    cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
            else:
                pool = urllib3.HTTPConnectionPool(address, target.port, maxsize=CONNECTIONS_PER_POOL, block=False,
                                                  retries=False)
            pool.ConnectionCls = _HTTPSConnection if target.scheme == "https" else _HTTPConnection
            self._pools[key] = pool
            while len(self._pools) > MAX_POOLS:
                self._pools.popitem(last=False)[1].close()
            return pool
