"""What a task's job uses while it runs: the task store, its fence, and recording progress."""

from __future__ import annotations

from rq import get_current_job

from ..settings import current_settings
from ..store import Store


def current_store() -> Store:
    """The task store, on the Redis connection RQ gave the running job."""
    settings = current_settings()
    return Store(get_current_job().connection, settings.task_ttl, settings.lease)


def fence() -> str:
    """The running job's id: the task must still name it for the job's writes to count."""
    return get_current_job().id


def record(store: Store, task_id: int, progress: int | None = None, **fields) -> bool:
    """Save progress (and fields) on the task, where GET reads it and where it never goes
    down. False when the write is refused (the task is gone, finished, or another job took
    it over): the job should stop."""
    return store.update(task_id, progress, fence=fence(), **fields) is not None


def record_stage(store: Store, task_id: int, progress: int, **fields) -> bool:
    """`record`, and show the progress in the RQ job's meta too, for rq-dashboard: for a
    job that goes through stages (a scoring run is one short call)."""
    if not record(store, task_id, progress, **fields):
        return False
    job = get_current_job()
    job.meta["progress"] = progress
    job.save_meta()
    return True
