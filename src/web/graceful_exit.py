"""SIGTERM stops the web server the way Ctrl-C does, and the process exits 0.

waitress installs no signal handlers. Without one, SIGTERM kills the process mid-request; and
a container's PID 1 ignores it altogether (the kernel drops signals PID 1 has no handler
for), so every `docker stop` waits its 10 s and ends in SIGKILL.
"""

import signal


def exit_on_sigterm() -> None:
    """From now on SIGTERM raises SystemExit(0) in the main thread. waitress's serving loop
    catches it, lets the requests in hand finish (for at most 5 s) and returns."""
    signal.signal(signal.SIGTERM, _exit)


def _exit(signum, frame):
    raise SystemExit(0)
