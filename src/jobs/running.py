"""What a task's job uses while it runs: the task store, the storage of photos and results,
its fence, and recording progress."""

from __future__ import annotations

from rq import get_current_job

from src.settings import current_settings
from src.storage import Storage, current_storage
from src.store import Store


def current_store() -> Store:
    """The task store, on the Redis connection RQ gave the running job."""
    settings = current_settings()
    return Store(get_current_job().connection, settings.task_ttl, settings.lease)


def storage() -> Storage:
    """Where photos and results live, for this process."""
    return current_storage(current_settings())


def fence() -> str:
    """The running job's id: the task must still name it for the job's writes to count."""
    return get_current_job().id


def record_stage(store: Store, task_id: int, progress: int, **fields) -> bool:
    """Save progress (and fields) on the task, where GET reads it and where it never goes
    down, and show the progress in the RQ job's meta too, for rq-dashboard. False when the
    write is refused (the task is gone, finished, or another job took it over): the job
    should stop."""
    job = get_current_job()
    if store.update(task_id, progress, fence=job.id, **fields) is None:
        return False
    job.meta["progress"] = progress
    job.save_meta()
    return True
