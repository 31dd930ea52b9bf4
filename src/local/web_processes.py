"""WEB_PROCESSES web processes on one port: the listening sockets are opened once, here, and
every web process (`python wsgi.py`) inherits them and accepts from the same queue.

One Python process answers at most one core's worth of requests (its threads take turns on
the GIL), so `make run` starts one per core by default. Sharing inherited sockets, rather
than each process binding its own with SO_REUSEPORT, means that a connection waiting to be
accepted is never lost with the process that would have taken it: a web process killed
outright leaves the queue to the others, and its replacement (started alone, by the
supervisor, with the same sockets) joins them. The sockets stay open as long as their owner
(`make run`'s launcher, or `python -m src.local.web_processes` in the web container) runs.

    python -m src.local.web_processes    WEB_PROCESSES web processes, supervised (the container's command)
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from src.local.supervisor import Child, Supervisor, say
from src.settings import Settings, SettingsError
from src.web.server import LISTEN_FDS, OPTIONS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def listen(settings: Settings) -> list[socket.socket]:
    """Listening sockets on every address HOST resolves to, at PORT, as waitress would open
    them (SO_REUSEADDR; IPv6 sockets for IPv6 only), inheritable by the web processes."""
    sockets = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM,
                                                                  flags=socket.AI_PASSIVE):
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(OPTIONS["backlog"])
            sock.set_inheritable(True)
            sockets.append(sock)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise RuntimeError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from exc
    return sockets


def web_children(settings: Settings, sockets: list[socket.socket], env: dict[str, str]) -> list[Child]:
    """One supervised `python wsgi.py` per WEB_PROCESSES, each given the listening sockets."""
    fds = tuple(sock.fileno() for sock in sockets)
    popen = {"env": {**env, LISTEN_FDS: ",".join(map(str, fds))}, "pass_fds": fds}
    return [Child(f"web server {number}", [sys.executable, "wsgi.py"], popen=popen)
            for number in range(1, settings.web_processes + 1)]


def main() -> int:
    try:
        settings = Settings.from_env()
        sockets = listen(settings)
    except (SettingsError, RuntimeError) as exc:
        say(str(exc))
        return 2
    supervisor = Supervisor(cwd=ROOT)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    try:
        for child in web_children(settings, sockets, dict(os.environ)):
            supervisor.start(child)
        say(f"{settings.web_processes} web processes on port {settings.port}")
        supervisor.run()
        return 0
    finally:
        supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
