"""SIGTERM stops the web server the way Ctrl-C does, and the process exits 0.

waitress installs no signal handlers. Without one, SIGTERM kills the process mid-request; and
a container's PID 1 ignores it altogether (the kernel drops signals PID 1 has no handler
for), so every `docker stop` waits its 10 s and ends in SIGKILL.
"""

import signal

from src.web.waiting import release_everywhere


def exit_on_sigterm() -> None:
    """From now on SIGTERM wakes the held answers and raises SystemExit(0) in the main
    thread. waitress's serving loop catches it, lets the requests in hand finish (for at most
    5 s) and returns; src/web/server.py then sends what they wrote."""
    signal.signal(signal.SIGTERM, _exit)


def _exit(signum, frame):
    release_everywhere()  # held answers (Prefer: wait) answer now, not after the 5 s
    raise SystemExit(0)
