"""The end of a finished task's time to live: its keys expire in Redis by themselves; this
job removes what Redis cannot, its files."""

from __future__ import annotations

from .. import lifecycle
from ..settings import current_settings
from . import running


def expire_task(task_id: int, digest: str, result_file: str = "") -> str:
    settings = current_settings()
    store = running.current_store()
    store.remove(task_id)
    lifecycle.release_files(store, settings.upload_dir, task_id, digest, result_file)
    return "expired"
