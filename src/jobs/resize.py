"""The resize job: the stored photo through the resize pipeline into a stored result, with
progress recorded at each stage.

The object store away (StoreUnavailable) is nobody's fault: the run waits for it, with
backoff, and starts over once it answers; after STORE_WAIT it hands the task to a new job
(not counted as a loss), well before RQ's timeout would kill it.
"""

from __future__ import annotations

import logging
import time

from src import metrics
from src.jobs import running
from src.jobs.resizer import CorruptImage, resize
from src.limits.disk import is_disk_full
from src.settings import current_settings
from src.storage import Storage, StoreUnavailable
from src.store import Store
from src.tasks import lifecycle, losses, queues, results
from src.tasks.resize_spec import ResizeSpec

log = logging.getLogger(__name__)

# Progress once each stage is done; ready (100) comes when the result is recorded. A stage
# done within PROGRESS_GAP of the last one recorded is not recorded: no poll would see it, and
# each is two round trips (of a 2 MP resize's ~12).
PROGRESS = {"started": 5, "decoded": 40, "resized": 70, "encoded": 95}
PROGRESS_GAP = 0.1
STORE_WAIT = 4 * queues.RESIZE_JOB_TIMEOUT / 5  # seconds one run waits for the object store
MAX_STORE_DELAY = 5.0
DISK_FULL_DELAY = 2.0  # seconds before a run that found the disk full runs again


class TaskGone(Exception):
    """The task was deleted while its image was being made."""


@metrics.resize_timed
def resize_task(task_id: int) -> str:
    store, storage = running.current_store(), running.storage()
    started, delay = time.monotonic(), 0.2
    while True:
        task = store.waiting(task_id)
        if task is None or task.get("job_id") != running.fence():
            return "task gone"  # deleted, finished, or this run was replaced by another
        try:
            return _run(store, storage, task_id, task)
        except StoreUnavailable as exc:
            if time.monotonic() - started > STORE_WAIT:
                return _hand_over(store, task_id)
            log.warning("task %s: %s; trying again in %g s", task_id, exc, delay)
            time.sleep(delay)
            delay = min(2 * delay, MAX_STORE_DELAY)


def _run(store: Store, storage: Storage, task_id: int, task: dict) -> str:
    spec = ResizeSpec.from_json(task["spec"])
    name = results.new_name(spec.format)
    # Recorded before the result exists, so whatever ends the task (a delete, a failure, its
    # expiry) removes the result too, even if this worker dies while writing it.
    store.name_result_file(name)
    kept = False
    try:
        if not running.record_stage(store, task_id, PROGRESS["started"], state="running", result_file=name):
            return "task gone"
        if task.get("result_file"):  # a run before this one was lost midway: drop its result
            lifecycle.remove_result_file(store, storage, task["result_file"])

        recorded = time.monotonic()

        def report(stage: str) -> None:
            nonlocal recorded
            if time.monotonic() - recorded < PROGRESS_GAP:
                return
            if not running.record_stage(store, task_id, PROGRESS[stage]):
                raise TaskGone
            recorded = time.monotonic()

        with storage.open_photo(task["digest"]) as photo, storage.write_result(name) as output:
            image = resize(photo, spec, output, report)
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
        if not kept:  # deleted meanwhile, the job failed or the store went away: the result is nobody's
            lifecycle.remove_result_file(store, storage, name)


def _hand_over(store: Store, task_id: int) -> str:
    """The store is still away: a new job takes the task, and this worker is free."""
    verdict, new_job = losses.replace_job(store, task_id, queues.RESIZE_QUEUE, running.fence(), False,
                                          current_settings())
    if verdict != "replaced":
        return "task gone"
    return f"the object store is unavailable; handed over to {new_job}"
