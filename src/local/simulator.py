"""Scorer simulator: a TEST PEER standing in for the external "merlinface" scoring API.

This module is not part of the photo-task service. The real scorer cannot be reached from
development and CI, so tests, demos and `make run` (when SCORER_URL is unset) talk to this
stand-in instead. It speaks the protocol of the shared contract, section "The remote scorer":

1. POST multipart `name` + `photo` -> 200 `{"status": "ready", "result": 0.87, "errors": []}`
   or 202 `{"status": "wait", "result": null, "retry_id": X, "errors": []}`;
2. POST multipart `retry_id` = X -> `wait` again until the configured rounds pass, then ready.

The protocol is accepted on any path. A path whose last segment is `_control`, `_calls`,
`_reset` or `_health` is a control endpoint instead (see `Simulator._control`), so
`<SCORER_URL>_control` works as well as `/_control`. Faults and answer variants that the real
API has been seen to produce can be switched on at run time; see `DEFAULTS`.
"""

import argparse
import collections
import hashlib
import itertools
import json
import signal
import sys
import threading
import time
import uuid

import waitress
from werkzeug.wrappers import Request, Response

DEFAULTS = {
    "wait_rounds": 0,  # `wait` answers a task gets before `ready`; the first answer counts
    "result_as": "number",  # "number" (0.8731) or "string" ("0.8731")
    "retry_id_as": "uuid",  # "uuid" (a string) or "int"
    "status_word": "ready",  # "ready" or "success"
    "faults": [],  # FIFO queue; each protocol request consumes one before normal handling
    "always": None,  # a fault applied to every protocol request while the queue is empty
    "slow_seconds": 2.0,  # delay of the "slow" fault
    "forgetful": False,  # forget each task as soon as it answered `wait`, as if restarting
}


# Protocol calls kept for `_calls`, newest last: enough for any test or benchmark, and a
# simulator left running under `make run` does not grow without end.
MAX_CALLS = 100_000


def _error_body(message):
    return {"status": "error", "result": None, "errors": [message]}


# Fault -> (HTTP status, body); a str body is sent as HTML. "slow" and "bad_result" depend on
# the settings and are handled in Simulator._protocol.
_FAULT_ANSWERS = {
    "500": (500, _error_body("simulated internal error")),
    "503": (503, _error_body("simulated overload")),
    "429": (429, _error_body("too many requests")),
    "garbage": (200, "<html>oops"),
    "reject": (400, _error_body("rejected")),
    "error_status": (200, _error_body("bad photo")),
    "drop": (502, "<html>502 Bad Gateway</html>"),  # a dropped connection, as a proxy reports it
}
FAULTS = (*_FAULT_ANSWERS, "slow", "bad_result")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


_VALID = {
    "wait_rounds": lambda v: _is_number(v) and isinstance(v, int),
    "result_as": lambda v: v in ("number", "string"),
    "retry_id_as": lambda v: v in ("uuid", "int"),
    "status_word": lambda v: v in ("ready", "success"),
    "faults": lambda v: isinstance(v, list) and all(f in FAULTS for f in v),
    "always": lambda v: v is None or v in FAULTS,
    "slow_seconds": _is_number,
    "forgetful": lambda v: isinstance(v, bool),
}
_CONTROL_METHODS = {
    "_control": ("GET", "POST"),
    "_calls": ("GET",),
    "_reset": ("POST",),
    "_health": ("GET",),
    "_forget": ("POST",),
}


def expected_score(name: str, photo_bytes: bytes) -> float:
    """The score the simulator gives `name` with this photo (for tests to compare against)."""
    return _score(name, hashlib.sha256(photo_bytes).hexdigest())


def _score(name, photo_sha256):
    digest = hashlib.sha256(f"{name.strip().lower()}:{photo_sha256}".encode()).hexdigest()
    return round(int(digest[:8], 16) / 0xFFFFFFFF, 4)


def _answer(status, body):
    if isinstance(body, str):
        return Response(body, status, mimetype="text/html")
    return Response(json.dumps(body), status, mimetype="application/json")


def _describe(request):
    """The record of one protocol call; uploads are kept as metadata and a digest only."""
    files = {}
    for field, upload in request.files.items():
        data = upload.read()
        files[field] = {
            "filename": upload.filename,
            "content_type": upload.content_type,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    fields = request.form.to_dict()
    return {"time": time.time(), "path": request.path, "mimetype": request.mimetype,
            "fields": fields, "files": files}


class Simulator:
    """The WSGI app. All shared state sits behind one lock; methods are usable in-process."""

    def __init__(self, **settings):
        self._lock = threading.Lock()
        self.reset()
        self.configure(**settings)

    def configure(self, **kw):
        """Merge `kw` into the settings (a `faults` list replaces the queue); return them all."""
        for key, value in kw.items():
            if key not in _VALID or not _VALID[key](value):
                raise ValueError(f"invalid setting {key}={value!r}")
        with self._lock:
            self._settings.update(kw)
            self._settings["faults"] = list(self._settings["faults"])  # never the caller's list
            return dict(self._settings, faults=list(self._settings["faults"]))

    def reset(self):
        """Back to the default settings, with no recorded calls and no pending tasks."""
        with self._lock:
            self._settings = dict(DEFAULTS, faults=[])
            self._calls = collections.deque(maxlen=MAX_CALLS)
            self._tasks = {}  # str(retry_id) -> {"retry_id", "score", "waits_left"}
            self._ids = itertools.count(1)

    def forget(self):
        """Lose every pending task, as a scorer that restarts does: polls then get 404."""
        with self._lock:
            self._tasks = {}

    def calls(self):
        """The recorded protocol calls (the last MAX_CALLS), oldest first."""
        with self._lock:
            return list(self._calls)

    def __call__(self, environ, start_response):
        request = Request(environ)
        endpoint = request.path.rstrip("/").rsplit("/", 1)[-1]
        if endpoint in _CONTROL_METHODS:
            response = self._control(endpoint, request)
        elif request.method != "POST":
            response = _answer(405, _error_body("method not allowed"))
        else:
            response = self._protocol(request)
        return response(environ, start_response)

    def _control(self, endpoint, request):
        """GET|POST _control (POST merges a JSON object), GET _calls, POST _reset, GET _health,
        POST _forget (lose the pending tasks, as a restart would)."""
        if request.method not in _CONTROL_METHODS[endpoint]:
            return _answer(405, _error_body("method not allowed"))
        if endpoint == "_health":
            return _answer(200, {"ok": True})
        if endpoint == "_calls":
            return _answer(200, self.calls())
        if endpoint == "_forget":
            self.forget()
            return _answer(200, {"ok": True})
        if endpoint == "_reset":
            self.reset()
            return _answer(200, self.configure())
        changes = request.get_json(silent=True) if request.method == "POST" else {}
        if not isinstance(changes, dict):
            return _answer(400, _error_body("expected a JSON object"))
        try:
            return _answer(200, self.configure(**changes))
        except ValueError as exc:
            return _answer(400, _error_body(str(exc)))

    def _protocol(self, request):
        call = _describe(request)
        with self._lock:
            self._calls.append(call)
            queue = self._settings["faults"]
            fault = queue.pop(0) if queue else self._settings["always"]
            settings = dict(self._settings)
        if fault == "slow":
            time.sleep(settings["slow_seconds"])  # outside the lock: other requests go on
        elif fault == "bad_result":
            body = {"status": settings["status_word"], "result": "not-a-number", "errors": []}
            return _answer(200, body)
        elif fault:
            return _answer(*_FAULT_ANSWERS[fault])
        if "retry_id" in call["fields"]:
            return self._poll(call["fields"]["retry_id"])
        return self._start(call["fields"].get("name", ""), call["files"].get("photo"))

    def _start(self, name, photo):
        if not name.strip() or not photo or not photo["size"]:
            return _answer(400, _error_body("name and photo are required"))
        score = _score(name, photo["sha256"])
        with self._lock:
            task = {"retry_id": None, "score": score, "waits_left": self._settings["wait_rounds"]}
            if task["waits_left"]:
                task["retry_id"] = self._new_retry_id()
                if not self._settings["forgetful"]:
                    self._tasks[str(task["retry_id"])] = task
            return self._step(task)

    def _new_retry_id(self):
        return next(self._ids) if self._settings["retry_id_as"] == "int" else str(uuid.uuid4())

    def _poll(self, retry_id):
        with self._lock:
            task = self._tasks.get(retry_id)
            return self._step(task) if task else _answer(404, _error_body("unknown retry_id"))

    def _step(self, task):
        """One answer for `task`; the caller holds the lock. A finished task stays pollable,
        answering `ready` again, as a client that lost the answer may ask twice."""
        if task["waits_left"]:
            task["waits_left"] -= 1
            body = {"status": "wait", "result": None, "retry_id": task["retry_id"], "errors": []}
            return _answer(202, body)
        settings = self._settings
        result = f"{task['score']:.4f}" if settings["result_as"] == "string" else task["score"]
        return _answer(200, {"status": settings["status_word"], "result": result, "errors": []})


def create_simulator(**settings) -> Simulator:
    """A simulator with `settings` merged over `DEFAULTS` (ValueError on a bad one)."""
    return Simulator(**settings)


def _url(host, port):
    return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{port}/api/"


class Server:
    """The simulator served by waitress (HTTP/1.1 keep-alive, a thread pool), as a real API
    server would be, so the service's pooled connections are reused as they would be there."""

    def __init__(self, app: Simulator, host: str, port: int):
        self.app = app
        self._server = waitress.create_server(app, host=host, port=port, threads=8,
                                              ident="scorer-simulator", clear_untrusted_proxy_headers=True)
        self.port = self._server.effective_port

    def serve_forever(self) -> None:
        try:
            self._server.run()
        except OSError:
            pass  # closing the sockets under a running select() is how waitress stops

    def shutdown(self) -> None:
        self._server.close()


def serve(host="127.0.0.1", port=0, simulator=None):
    """Serve `simulator` (a new one by default) on a daemon thread; return (server, url).

    The app is `server.app`; stop with `server.shutdown()`.
    """
    server = Server(simulator if simulator is not None else create_simulator(), host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, _url(host, server.port)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the scorer simulator (a test peer).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--wait-rounds", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        simulator = create_simulator(wait_rounds=args.wait_rounds)
    except ValueError as exc:
        parser.error(str(exc))
    server = Server(simulator, args.host, args.port)
    for signum in (signal.SIGINT, signal.SIGTERM):
        # SIGINT too: a shell starts background jobs with it ignored, yet Ctrl-C on
        # `make run` should stop this peer along with the service.
        signal.signal(signum, _interrupt)
    try:
        print(f"scorer simulator listening on {_url(args.host, server.port)}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
