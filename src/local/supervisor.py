"""Keeping child processes running, as a process supervisor does.

A child that dies is logged, whatever it left behind is stopped, and it is started again
after a backoff (0.5 s, doubling up to 10 s; back to 0.5 s once it had stayed up 30 s).
Stopping signals every child at once, gives them a few seconds, then kills what is left;
children marked `stop_last` (the embedded Redis the others talk to) go only after the rest.

A child is started in a session of its own (see `processes.spawn`), and everything it starts
stays in that session (an RQ worker's scheduler, and its work horse, which moves to a
process group of its own but not to another session). So "the child and what it started"
is "the processes of its session", found by session id even after the child itself died.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from src.local.processes import spawn

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
STABLE_AFTER = 30.0  # seconds up after which a death is a new incident, not a crash loop
STOP_GRACE = 5.0  # seconds a child gets to stop (an RQ worker to finish its job) on SIGTERM
LEFTOVER_GRACE = 2.0  # seconds what a dead child left behind gets (a scheduler releases its lock)
POLL = 0.2


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def session_members(sid: int) -> list[int]:
    """The live processes of session `sid` (zombies, already dead, are not counted)."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                members.append(pid)
        except (OSError, psutil.Error):  # gone while we looked
            pass
    return members


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


@dataclass(eq=False)
class Child:
    """One supervised process. `ready(process)`, when given, is awaited at the first start
    (raising RuntimeError if the child does not come up); restarts are not awaited."""

    name: str
    command: list[str]
    ready: Callable[[subprocess.Popen], None] | None = None
    stop_last: bool = False
    popen: dict = field(default_factory=dict)  # this child's own Popen arguments (env, pass_fds)
    process: subprocess.Popen | None = field(default=None, init=False)
    started_at: float = field(default=0.0, init=False)
    restart_at: float = field(default=0.0, init=False)
    backoff: float = field(default=FIRST_BACKOFF, init=False)

    def start(self, **popen_kwargs) -> None:
        self.process = spawn(self.command, **{**popen_kwargs, **self.popen})
        self.started_at = time.monotonic()

    def check(self, now: float, **popen_kwargs) -> None:
        """Restart the child if it is due; notice if it died, and schedule its restart."""
        if self.process is None:
            if now >= self.restart_at:
                self.start(**popen_kwargs)
                say(f"{self.name} started again (pid {self.process.pid})")
            return
        code = self.process.poll()
        if code is None:
            return
        if now - self.started_at >= STABLE_AFTER:
            self.backoff = FIRST_BACKOFF
        say(f"{self.name} (pid {self.process.pid}) {_describe_exit(code)}; "
            f"restarting it in {self.backoff:g} s")
        self._stop_leftovers()
        self.process = None
        self.restart_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def _stop_leftovers(self) -> None:
        """SIGTERM what the dead child started (so an RQ scheduler releases its lock), then
        SIGKILL what still runs after LEFTOVER_GRACE: nothing orphaned outlives it."""
        leftovers = session_members(self.process.pid)
        if leftovers:
            say(f"stopping what {self.name} left behind: pids {', '.join(map(str, leftovers))}")
            self.send(signal.SIGTERM)
            self.wait(time.monotonic() + LEFTOVER_GRACE)
            self.send(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM the child, which stops what it started (an RQ worker: warm shutdown, its
        scheduler too); if it has just died, SIGTERM what it left behind instead."""
        if self.process is not None:
            self.send(signal.SIGTERM, main_only=self.process.poll() is None)

    def send(self, signum: int, main_only: bool = False) -> None:
        if self.process is None:
            return
        pids = [self.process.pid] if main_only else session_members(self.process.pid)
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def wait(self, deadline: float) -> bool:
        """Wait until no process of the child's session runs, or `deadline`; True if none does."""
        while self.process is not None:
            self.process.poll()  # reaps the child itself
            if not session_members(self.process.pid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


class Supervisor:
    """Children started in order, kept running, and stopped together."""

    def __init__(self, **popen_kwargs):
        self.popen_kwargs = popen_kwargs
        self.children: list[Child] = []
        self.stopping = False

    def start(self, child: Child) -> None:
        self.children.append(child)
        child.start(**self.popen_kwargs)
        if child.ready:
            child.ready(child.process)

    def run(self) -> None:
        """Keep the children running until `request_stop` (a signal handler) is called."""
        while not self.stopping:
            for child in self.children:
                child.check(time.monotonic(), **self.popen_kwargs)
            time.sleep(POLL)

    def request_stop(self, signum=None, frame=None) -> None:
        self.stopping = True

    def stop(self) -> None:
        """SIGTERM every child (an RQ worker: warm shutdown), give them STOP_GRACE together,
        SIGKILL what is left; then the same for the `stop_last` children."""
        for last in (False, True):
            wave = [child for child in self.children if child.stop_last == last]
            for child in wave:
                child.terminate()
            deadline = time.monotonic() + STOP_GRACE
            for child in wave:
                if not child.wait(deadline):
                    say(f"{child.name} did not stop within {STOP_GRACE:g} s; killing it")
                    child.send(signal.SIGKILL)
                    child.wait(time.monotonic() + STOP_GRACE)
