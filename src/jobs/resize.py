"""The resize job: the stored photo through the resize pipeline into a result file, with
progress recorded at each stage."""

from __future__ import annotations

import time

from src import metrics
from src.jobs import running
from src.jobs.resizer import CorruptImage, resize
from src.limits.disk import is_disk_full
from src.settings import current_settings
from src.tasks import lifecycle, photos, results
from src.tasks.resize_spec import ResizeSpec

# Progress once each stage is done; ready (100) comes when the result is recorded.
PROGRESS = {"started": 5, "decoded": 40, "resized": 70, "encoded": 95}
DISK_FULL_DELAY = 2.0  # seconds before a run that found the disk full runs again


class TaskGone(Exception):
    """The task was deleted while its image was being made."""


@metrics.resize_timed
def resize_task(task_id: int) -> str:
    settings = current_settings()
    store = running.current_store()
    task = store.waiting(task_id)
    if task is None or task.get("job_id") != running.fence():
        return "task gone"  # deleted, finished, or this run was replaced by another
    spec = ResizeSpec.from_json(task["spec"])
    name, path = results.new_result(settings.upload_dir, spec.format)
    # Recorded before the file exists, so whatever ends the task (a delete, a failure, its
    # expiry) removes the file too, even if this worker dies while writing it.
    store.name_result_file(name)
    if not running.record_stage(store, task_id, PROGRESS["started"], state="running",
                                   result_file=name):
        return "task gone"
    if task.get("result_file"):  # a run before this one was lost midway: drop its file
        lifecycle.remove_result_file(store, settings.upload_dir, task["result_file"])

    def report(stage: str) -> None:
        if not running.record_stage(store, task_id, PROGRESS[stage]):
            raise TaskGone

    kept = False
    try:
        image = resize(photos.photo_path(settings.upload_dir, task["digest"]), spec, path, report)
        result = {"url": results.url(name), "width": image.width, "height": image.height,
                  "format": spec.format, "bytes": image.bytes}
        kept = lifecycle.finish_task(store, task_id, result, name, fence=running.fence(), result_bytes=image.bytes)
        return "ready" if kept else "task gone"
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        # Not the task's fault, nor a loss: its partial file goes (finally), and it runs
        # again later, when its turn comes after DISK_FULL_DELAY.
        store.update(task_id, fence=running.fence(), due=time.time() + DISK_FULL_DELAY)
        return "disk full: runs again later"
    except TaskGone:
        return "task gone"
    except CorruptImage as exc:
        lifecycle.fail_task(store, task_id, "corrupt_image",
                            f"the photo could not be decoded: {exc}", name)
        return "corrupt image"
    finally:
        if not kept:  # deleted meanwhile, or the job failed: the file is nobody's
            lifecycle.remove_result_file(store, settings.upload_dir, name)
