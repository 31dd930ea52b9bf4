"""Expire jobs that an earlier version scheduled on RQ's scheduler, one per finished task.

Finished tasks now go on `pt:expiring`, and the sweep removes their files (src/jobs/sweep.py).
A store upgraded from before that still holds these jobs, each due when its task's time to
live ends; without this function they would fail, and their tasks' files would stay (their
photos still counted as used). Once TASK_TTL has passed since the upgrade, none is left.
"""

from __future__ import annotations

from src.jobs import running
from src.tasks import lifecycle


def expire_task(task_id: int, digest: str, result_file: str = "") -> str:
    lifecycle.expire_task(running.current_store(), running.storage(), task_id, digest, result_file)
    return "expired"
