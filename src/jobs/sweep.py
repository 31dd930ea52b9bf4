"""The sweeps, enqueued every SWEEP_INTERVAL by the dispatcher: `sweep_tasks` fails overdue
scoring tasks and re-runs lost jobs (src/tasks/losses.py); `sweep_files` removes expired
tasks' files and, now and then, files no task names (files under UPLOAD_DIR or objects in
the store, as src/storage/ lists them). docs/architecture.md ("Nothing stuck, nothing lost").
"""

from __future__ import annotations

import logging
import time

from src.jobs import running
from src.settings import current_settings
from src.storage import Storage
from src.store import WAITING, Store, take_turn
from src.tasks import lifecycle, liveness, losses

log = logging.getLogger(__name__)

BATCH = 1000


def sweep_tasks() -> str:
    settings = current_settings()
    store = running.current_store()
    now = time.time()
    overdue = sum(_fail_if_overdue(store, task_id, settings) for task_id in store.overdue_tasks(now, BATCH))
    verdicts = [_check(store, task_id, settings) for task_id in store.unchanged_tasks(now, BATCH)]
    return (f"{overdue} overdue, {verdicts.count('replaced')} re-run, {verdicts.count('fail')} failed, "
            f"{verdicts.count('dropped')} dropped (their POST died)")


def _fail_if_overdue(store: Store, task_id: int, settings) -> bool:
    task = store.get(task_id)
    if task is None or task["state"] not in WAITING:
        store.stop_tracking(task_id)
        return False
    return lifecycle.fail_overdue(store, task_id, task, settings.scorer_deadline)


def _check(store: Store, task_id: int, settings) -> str:
    """Renew the lease of a task whose job is alive, or that waits for its turn in a
    backlog (src/tasks/turns.py) or for a run due later; drop one whose POST died between its
    claim and its start; replace a lost one."""
    task = store.get(task_id)
    if task is None or task["state"] not in WAITING:
        store.stop_tracking(task_id)
        return "gone"
    lost = task.get("job_id", "")
    if task.get("turn") or store.is_due_later(task_id) or liveness.job_is_alive(store.redis, lost):
        store.renew_lease(task_id)
        return "alive"
    if task.get("posting"):  # claimed by a web process that died before it started the task
        return "dropped" if lifecycle.drop_unstarted(store, running.storage(), task_id) else "alive"
    return losses.run_lost_job_again(store, task_id, task, lost, settings)


def sweep_files() -> str:
    settings = current_settings()
    store, storage = running.current_store(), running.storage()
    ended = store.ended_tasks(time.time(), BATCH)
    for task_id, (digest, result_file) in ended.items():
        lifecycle.expire_task(store, storage, task_id, digest, result_file)
    if not take_turn(store.redis, "orphan_scan", orphan_scan_interval(settings)):
        return f"{len(ended)} expired"
    cutoff = time.time() - settings.orphan_grace
    removed = _sweep_photos(store, storage, cutoff) + _sweep_results(store, storage, cutoff)
    return f"{len(ended)} expired, {removed} orphan files removed"


def orphan_scan_interval(settings) -> float:
    """How often the stored files are looked through for orphans: every sweep when
    ORPHAN_GRACE is short, else a tenth of it. The scan reads every stored photo and result
    (a week of tasks, by default); an orphan is only ever a leftover of a crash, and waits
    ORPHAN_GRACE anyway."""
    return max(settings.sweep_interval, settings.orphan_grace / 10)


def _sweep_photos(store: Store, storage: Storage, cutoff: float) -> int:
    """Remove the old photos no task uses. Most old photos are in use (a task keeps its photo
    for TASK_TTL), so their users are counted a batch at a time, in one round trip; only a
    photo found unused is locked and counted again before it goes."""
    removed = 0
    for digests in storage.old_photos(cutoff):
        for digest, users in zip(digests, store.photo_user_counts(digests)):
            if users == 0:
                with store.photo_lock(digest):
                    if store.photo_users(digest) == 0:
                        storage.remove_photo(digest)
                        removed += 1
    return removed


def _sweep_results(store: Store, storage: Storage, cutoff: float) -> int:
    removed = 0
    for names in storage.old_results(cutoff):
        for name, is_named in zip(names, store.named_result_files(names)):
            if not is_named:
                storage.remove_result(name)
                removed += 1
    return removed
