"""The steps shared by the web process and the workers when a task takes or lets go of its
files: a stored photo is kept while any task uses it, and removed with the last one."""

from __future__ import annotations

import logging
import time

import redis

from src import metrics
from src.storage import Storage, StoreUnavailable
from src.store import WAITING, Claim, Store
from src.tasks import queues

log = logging.getLogger(__name__)


def keep_photo(store: Store, storage: Storage, claim: Claim, digest: str, temp_path: str) -> None:
    """Put the upload of a task just claimed in its place (the claim made the task a user of
    the photo).

    A photo's file is removed only under its lock, by a release that found no user left. If
    the lock was free when the claim registered the task, no such release was under way, and
    any later one counts the task: the file is moved without the lock. Otherwise the move
    waits for the lock, so that a release that found no user before the claim removes the
    old file before the move, not the new one after it. Rewriting an existing copy is
    harmless: the bytes are the same by construction. A task claimed earlier by another POST
    (`claim.starting`) takes the lock too: what its lock was then is not known.
    """
    if not (claim.photo_busy or claim.starting):
        storage.put_photo(digest, temp_path)
        return
    with store.photo_lock(digest):
        storage.put_photo(digest, temp_path)


def remove_files(store: Store, storage: Storage, task_id: int, digest: str, result_file: str = "") -> None:
    """Remove a gone task's result, and its photo unless another task still uses it. With
    the object store away, what could not be removed is named by no task: the orphan sweep
    removes it once the store is back."""
    if result_file:
        remove_result_file(store, storage, result_file)
    with store.photo_lock(digest):
        if store.remove_photo_user(digest, task_id) == 0:
            try:
                storage.remove_photo(digest)
            except StoreUnavailable as exc:
                log.warning("photo %s could not be removed (if it was stored, the orphan sweep will): %s", digest, exc)


def remove_result_file(store: Store, storage: Storage, name: str) -> None:
    try:
        storage.remove_result(name)
    except StoreUnavailable as exc:
        log.warning("result %s left to the orphan sweep: %s", name, exc)
    store.remove_result_name(name)


def finish_task(store: Store, task_id: int, result, result_file: str = "", fence: str = "",
                result_bytes: int = 0) -> bool:
    """A waiting task is ready; its files go when its keys expire (its result's
    `result_bytes` count for its owner until then). False when the write is refused (the task
    was deleted, or its job replaced): then the caller still owns `result_file`."""
    kind = store.finish(task_id, result, fence, result_file, result_bytes)
    if kind is None:
        return False
    metrics.task_finished(store.redis, kind, "ready")
    return True


def fail_task(store: Store, task_id: int, code: str, message: str,
              result_file: str = "", fence: str = "") -> bool:
    """A waiting task failed; its files (a partial result too) go when its keys expire."""
    kind = store.fail(task_id, code, message, fence, result_file)
    if kind is None:
        return False
    metrics.task_finished(store.redis, kind, code)
    return True


def fail_overdue(store: Store, task_id: int, task: dict, deadline_seconds: float) -> bool:
    """A scoring task past its deadline fails with `scorer_timeout`, whatever its job does;
    False when it is not waiting or not overdue."""
    if task.get("state") not in WAITING or time.time() < float(task.get("deadline", "inf")):
        return False
    message = f"the scorer gave no result within {deadline_seconds:g} s"
    if int(task.get("faults", 0)):
        message += f" (last error: {task['last_fault']})"
    return fail_task(store, task_id, "scorer_timeout", message)


def expire_task(store: Store, storage: Storage, task_id: int, digest: str, result_file: str) -> None:
    """The end of a finished task's time to live: its keys have expired in Redis by
    themselves (or go now); its files go with them."""
    store.delete(task_id)
    remove_files(store, storage, task_id, digest, result_file)
    store.end_expiry(task_id)


def drop_unstarted(store: Store, storage: Storage, task_id: int) -> bool:
    """A task claimed a lease ago and never started: the web process that was creating it
    died between the two (its client had no answer, and its photo may never have reached its
    place). It is deleted, counts and files, as if its POST had been refused; False when it
    is not such a task."""
    if delete_task(store, storage, task_id, unstarted=True) is None:
        return False
    log.warning("task %s: its POST died before the task started; dropped", task_id)
    return True


def delete_task(store: Store, storage: Storage, task_id: int, owner: str = "", unstarted: bool = False) -> dict | None:
    """Delete a task, cancel its pending job and remove its files; None when there is no
    such task (for `owner`; with `unstarted`, none claimed and never started). Once its hash
    is gone the task is deleted: if Redis goes away before its files are let go of (or a
    request that Redis cut short left the photo's lock held), the sweep lets go of them, as
    it does for an expired task."""
    task = store.delete(task_id, owner, unstarted)
    if task is None:
        return None
    try:
        if task.get("job_id"):
            queues.cancel(store.redis, task["job_id"], task_id)
        if task.get("digest"):
            remove_files(store, storage, task_id, task["digest"], task.get("result_file", ""))
        store.end_expiry(task_id)
    except redis.RedisError as exc:
        log.warning("task %s deleted; its files are left to the sweep (%s)", task_id, exc)
    return task
