"""The resize job: the stored photo through the resize pipeline into a result file, with
progress recorded at each stage."""

from __future__ import annotations

from rq import get_current_job

from .. import lifecycle, photos, results
from ..resize_spec import ResizeSpec
from ..settings import current_settings
from ..store import WAITING, Store
from . import progress
from .resizer import resize

# Progress once each stage is done; ready (100) comes when the result is recorded.
PROGRESS = {"started": 5, "decoded": 40, "resized": 70, "encoded": 95}


class TaskGone(Exception):
    """The task was deleted while its image was being made."""


def resize_task(task_id: int) -> str:
    settings = current_settings()
    store = Store(get_current_job().connection, settings.task_ttl)
    task = store.get(task_id)
    if task is None or task["state"] not in WAITING:
        return "task gone"
    spec = ResizeSpec.from_json(task["spec"])
    name, path = results.new_result(settings.upload_dir, spec.format)
    # Recorded before the file exists, so whatever ends the task (a delete, a failure, its
    # expiry) removes the file too, even if this worker dies while writing it.
    if not progress.record(store, task_id, PROGRESS["started"], state="running", result_file=name):
        return "task gone"
    try:
        return _make(store, task_id, task, spec, name, path, settings.upload_dir)
    except BaseException:
        photos.discard(path)
        raise


def _make(store: Store, task_id: int, task: dict, spec: ResizeSpec, name: str, path: str,
          upload_dir: str) -> str:
    def report(stage: str) -> None:
        if not progress.record(store, task_id, PROGRESS[stage]):
            raise TaskGone

    try:
        image = resize(photos.photo_path(upload_dir, task["digest"]), spec, path, report)
    except TaskGone:
        photos.discard(path)
        return "task gone"
    result = {"url": results.url(name), "width": image.width, "height": image.height,
              "format": spec.format, "bytes": image.bytes}
    if not lifecycle.finish_task(store, task_id, task["digest"], result, name):
        photos.discard(path)  # deleted since the last stage
        return "task gone"
    return "ready"
