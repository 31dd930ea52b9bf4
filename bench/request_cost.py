"""What one request costs the answering process in CPU, one at a time: the floor under the
ratios that bench/http_load.py measures with 32 connections.

wrk's ratios mix a request's own cost with what 32 connections add (threads handing the GIL
to each other, the rest of the service sharing two cores) and with the machine's noise. Here
one keep-alive connection sends one request after another, so the answering process does
nothing else; its CPU time (user + system, from psutil) divided by the requests is what each
cost it. Same processes as bench/http_load.py: the service as `make run` runs it, and the
bare apps on the same waitress configuration (hello, parse+save, one read).

Then, in this process, single-threaded (`time.process_time`), where a GET's CPU goes:

- **the app**: our WSGI app (`src.web.app.create_app`, on the service's valkey) answering a GET
  of a ready task, called directly: no waitress, no socket to the client;
- **its task read**: `Store.get` alone, the one Redis round trip a GET makes;
- **redis-py's HGETALL** with the web's client settings (`store.connect`);
- **the round trip without redis-py**: the same HGETALL written to a socket and its reply
  parsed by hiredis: what the kernel and the parser cost, whatever the client library.

"The app without its read" is the app minus its task read measured alone; the same read
made amid the app's other work costs somewhat more than in a loop of its own.

    make bench-cost    # = .venv/bin/python bench/request_cost.py   (--rounds 5 --requests 1000)
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable

import hiredis
from http_load import TAG_LENGTH, Baseline, Body, Service, cpu_seconds, photo, run_tag, stop_all

from src.settings import Settings
from src.store import connect
from src.web.app import create_app


class Client:
    """One keep-alive connection; each request's answer is checked and read whole."""

    def __init__(self, url: str):
        self.url = url
        host, port = url.split("//")[1].rstrip("/").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=10)

    def close(self) -> None:
        self.connection.close()

    def send(self, method: str, path: str, body: bytes | None, headers: dict, expected: int) -> None:
        self.connection.request(method, path, body=body, headers=headers)
        answer = self.connection.getresponse()
        answer.read()
        if answer.status != expected:
            raise RuntimeError(f"{method} {self.url}{path}: {answer.status}, expected {expected}")


class Side:
    """A process answering requests of one kind: the service's web process or a baseline."""

    def __init__(self, name: str, server, url: str, request: Callable[[int], tuple], expected: int):
        self.name, self.server, self.url, self.expected = name, server, url, expected
        self.request = request  # request number -> (method, path, body, headers)
        self.cpu_us: list[float] = []

    def run(self, requests: int, keep: bool = True) -> None:
        """One run on a connection of its own (an idle one would be closed between runs)."""
        requests_made = [self.request(number) for number in range(requests)]  # built before counting
        client = Client(self.url)
        before = cpu_seconds(self.server)
        for method, path, body, headers in requests_made:
            client.send(method, path, body, headers, self.expected)
        if keep:
            self.cpu_us.append((cpu_seconds(self.server) - before) / requests * 1e6)
        client.close()

    def median(self) -> float:
        return statistics.median(self.cpu_us)


def cpu_per_call(function: Callable[[], object], calls: int, rounds: int) -> float:
    """Median over `rounds` of this thread's CPU µs per call of `function`."""
    for _ in range(calls // 10):
        function()
    medians = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            function()
        medians.append((time.process_time() - started) / calls * 1e6)
    return statistics.median(medians)


def raw_hgetall(redis_url: str, key: str) -> Callable[[], object]:
    """HGETALL over a plain socket, parsed by hiredis: a round trip without redis-py."""
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    command = f"*2\r\n$7\r\nHGETALL\r\n${len(key)}\r\n{key}\r\n".encode()

    def call():
        reader = hiredis.Reader()
        sock.sendall(command)
        reply = False
        while reply is False:
            reader.feed(sock.recv(65536))
            reply = reader.gets()
        return reply

    return call


def in_process(service: Service, task_id: int, tmp: str, calls: int, rounds: int) -> dict[str, float]:
    settings = Settings(redis_url=service.redis_url, given=frozenset({"REDIS_URL"}),
                        upload_dir=os.path.join(tmp, "app"))
    app = create_app(settings)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": f"task_id={task_id}",
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.input": None}

    def get():
        answer = b"".join(app(dict(environ), lambda status, headers, exc_info=None: None))
        assert answer.startswith(b'{"status": "ready"'), answer

    key = f"pt:task:{task_id}"
    client = connect(service.redis_url, fail_fast=True)
    return {"app": cpu_per_call(get, calls, rounds),
            "its task read (Store.get)": cpu_per_call(lambda: app.ctx.store.get(task_id), calls, rounds),
            "redis-py HGETALL": cpu_per_call(lambda: client.hgetall(key), calls, rounds),
            "HGETALL, socket + hiredis": cpu_per_call(raw_hgetall(service.redis_url, key), calls, rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000, help="requests per round and side")
    parser.add_argument("--workers", type=int, default=2, help="the service's WORKERS")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-cost-")
    started = []
    try:
        service = Service(tmp, args.workers)
        started.append(service)
        os.makedirs(os.path.join(tmp, "upload"))
        hello_app = Baseline("hello", "hello")
        upload_app = Baseline("upload", "parse+save", "--folder", os.path.join(tmp, "upload"))
        started += [hello_app, upload_app]
        body = Body(photo(), tmp)
        same = body.with_tag("s" * TAG_LENGTH)
        task_id = service.post(same, body.content_type)["task"]
        service.wait_ready(task_id)
        read_app = Baseline("read", "one read", "--redis-url", service.redis_url, "--key", f"pt:task:{task_id}")
        started.append(read_app)

        posting = {"Content-Type": body.content_type}
        run, numbers = run_tag(), itertools.count()

        def new(_):  # POST new: a photo of its own for every request, whichever side it goes to
            return "POST", "/", body.with_tag(f"{run}{next(numbers):0{TAG_LENGTH - len(run)}d}"), posting

        web = service.server
        get_task = Side("service", web, service.url, lambda n: ("GET", f"/?task_id={task_id}", None, {}), 200)
        pairs = [  # (scenario, service side, baseline side, target ratio)
            ("GET /?task_id=N", get_task,
             Side("hello", hello_app.server, hello_app.url, lambda n: ("GET", "/", None, {}), 200), 0.5),
            ("GET /?task_id=N", get_task,
             Side("one read", read_app.server, read_app.url, lambda n: ("GET", "/", None, {}), 200), None),
            ("POST same photo (dedupe)", Side("service", web, service.url, lambda n: ("POST", "/", same, posting), 200),
             Side("parse+save", upload_app.server, upload_app.url, lambda n: ("POST", "/", same, posting), 200), 0.8),
            ("POST new photo", Side("service", web, service.url, new, 202),
             Side("parse+save", upload_app.server, upload_app.url, new, 200), 0.6),
        ]
        print(f"{args.rounds} rounds of {args.requests} requests a side, one connection, one request at a time")
        for _, ours, theirs, _ in pairs:  # warm-up, not counted
            for side in (ours, theirs):
                side.run(200, keep=False)
                service.drain()
        for round_number in range(args.rounds):
            for _, ours, theirs, _ in pairs:
                for side in (ours, theirs) if round_number % 2 == 0 else (theirs, ours):
                    side.run(args.requests)
                    service.drain()  # POST new's tasks scored before the next run
        print(f"\n{'CPU us per request, medians':34s} {'service':>8s}  {'baseline':>20s}  cost ratio  target")
        for title, ours, theirs, target in pairs:
            ratio = theirs.median() / ours.median()
            print(f"{title:34s} {ours.median():8.0f}  {theirs.name:>10s} {theirs.median():9.0f}  {ratio:8.2f}x  "
                  + (f">= {target}x" if target else ""))

        print("\nA GET in this process, single-threaded, CPU us per call (medians):")
        costs = in_process(service, task_id, tmp, calls=2000, rounds=args.rounds)
        for name, value in costs.items():
            print(f"  {name:34s} {value:6.1f}")
        print(f"  {'the app without its read':34s} {costs['app'] - costs['its task read (Store.get)']:6.1f}")
    finally:
        stop_all(started, tmp)


if __name__ == "__main__":
    main()
