"""The end of a finished task's time to live: its keys expire in Redis by themselves; this
job removes what Redis cannot, its files."""

from __future__ import annotations

from rq import get_current_job

from .. import lifecycle
from ..settings import current_settings
from ..store import Store


def expire_task(task_id: int, digest: str, result_file: str = "") -> str:
    settings = current_settings()
    store = Store(get_current_job().connection, settings.task_ttl)
    store.remove(task_id)
    lifecycle.release_files(store, settings.upload_dir, task_id, digest, result_file)
    return "expired"
