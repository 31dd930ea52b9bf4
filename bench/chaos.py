"""The processes of a running launcher (`tests/launched.Launched`) that the fault benches
kill, each found the way an operator would: by command line, by process group, by what RQ
says a worker is doing. Shared by bench/soak.py and bench/faults.py."""

from __future__ import annotations

import time

import psutil
from rq import Worker

from harness import noisy_photo
from launched import alive


def big_resize(seed: int) -> tuple[bytes, dict[str, str]]:
    """A photo and resize settings that keep a worker busy for a second or so (a large
    PNG of noise made into a large PNG): long enough to be caught mid-resize."""
    return noisy_photo("PNG", (3000, 2000), seed), {"width": "2400", "format": "png"}


def hunt(find, timeout: float, step: float = 0.005):
    """Call `find` until it returns a process; that process, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = find()
        except (psutil.Error, OSError):
            found = None  # a process went away while we looked
        if found:
            return found
        time.sleep(step)
    return None


def resizing_worker(launched) -> psutil.Process | None:
    """A worker process in the middle of a resize: RQ has it busy on a job of the `resize`
    queue (resizes run in the worker process itself: there is no work horse)."""
    run = _running(launched, "src.jobs.resize.")
    return run[0] if run else None


def scoring_worker(launched, held: float = 0.3) -> psutil.Process | None:
    """A worker process in the middle of a scoring call that the scorer holds (its `slow`
    fault): RQ has it busy on a job of the `score` queue (scoring runs in the worker process
    itself), and still on the same job `held` seconds later, when an ordinary run would
    have ended long before."""
    first = _running(launched, "src.jobs.score.")  # a run of one task or a batch
    if first is None:
        return None
    time.sleep(held)
    return first[0] if _running(launched, "src.jobs.score.") == first else None


def _running(launched, functions: str) -> tuple[psutil.Process, str] | None:
    """A live worker of the launcher that RQ says is running a job of `functions`, and that job."""
    pids = {child.pid for child in launched.children("src.runners.worker")}
    for worker in Worker.all(connection=launched.redis):
        if worker.pid not in pids or not alive(worker.pid) or worker.get_state() != "busy":
            continue
        job = worker.get_current_job()
        if job is not None and job.func_name.startswith(functions):
            return psutil.Process(worker.pid), job.id
    return None


def kill(process: psutil.Process) -> int:
    """kill -9 one process (not its children); its pid."""
    process.kill()
    return process.pid
