"""The sweeps, enqueued every SWEEP_INTERVAL by the dispatcher: nothing stuck, nothing lost.

`sweep_tasks` looks at the waiting tasks nothing has changed for a lease (pt:active):
- a scoring task past its deadline fails with `scorer_timeout`, whether or not a job of it
  is still to run;
- a task whose job is gone (its worker killed, Redis lost mid-run, a web process killed
  between creating the task and enqueuing it) gets a new job; after MAX_LOSSES such losses
  it fails with `internal_error`.
`sweep_files` removes the files of finished tasks whose time to live has ended (their keys
have expired in Redis by themselves), and, every `orphan_scan_interval`, stored photos and
results that no task names, once they are older than ORPHAN_GRACE (a file being made is
always younger).
"""

from __future__ import annotations

import logging
import os
import time

from src.jobs import running
from src.settings import current_settings
from src.store import WAITING, Store, take_turn
from src.tasks import lifecycle, liveness, losses, photos, results

log = logging.getLogger(__name__)

BATCH = 1000


def sweep_tasks() -> str:
    settings = current_settings()
    store = running.current_store()
    now = time.time()
    overdue = sum(_fail_if_overdue(store, task_id, settings) for task_id in store.overdue_tasks(now, BATCH))
    verdicts = [_check(store, task_id, settings) for task_id in store.unchanged_tasks(now, BATCH)]
    return f"{overdue} overdue, {verdicts.count('replaced')} re-run, {verdicts.count('fail')} failed"


def _fail_if_overdue(store: Store, task_id: int, settings) -> bool:
    task = store.get(task_id)
    if task is None or task["state"] not in WAITING:
        store.stop_tracking(task_id)
        return False
    return lifecycle.fail_overdue(store, task_id, task, settings.scorer_deadline)


def _check(store: Store, task_id: int, settings) -> str:
    """Renew the lease of a task whose job is alive; replace a lost one."""
    task = store.get(task_id)
    if task is None or task["state"] not in WAITING:
        store.stop_tracking(task_id)
        return "gone"
    lost = task.get("job_id", "")
    if store.is_due_later(task_id) or liveness.job_is_alive(store.redis, lost):
        store.renew_lease(task_id)
        return "alive"
    return losses.run_lost_job_again(store, task_id, task, lost, settings)


def sweep_files() -> str:
    settings = current_settings()
    store = running.current_store()
    ended = store.ended_tasks(time.time(), BATCH)
    for task_id, (digest, result_file) in ended.items():
        lifecycle.expire_task(store, settings.upload_dir, task_id, digest, result_file)
    if not take_turn(store.redis, "orphan_scan", orphan_scan_interval(settings)):
        return f"{len(ended)} expired"
    cutoff = time.time() - settings.orphan_grace
    removed = _sweep_photos(store, settings.upload_dir, cutoff) + _sweep_results(store, settings.upload_dir, cutoff)
    return f"{len(ended)} expired, {removed} orphan files removed"


def orphan_scan_interval(settings) -> float:
    """How often the stored files are looked through for orphans: every sweep when
    ORPHAN_GRACE is short, else a tenth of it. The scan reads every stored photo and result
    (a week of tasks, by default); an orphan is only ever a leftover of a crash, and waits
    ORPHAN_GRACE anyway."""
    return max(settings.sweep_interval, settings.orphan_grace / 10)


def _old_files(folder: str, cutoff: float) -> list[os.DirEntry]:
    if not os.path.isdir(folder):
        return []
    return [e for e in os.scandir(folder) if e.is_file() and e.stat().st_mtime < cutoff]


def _sweep_photos(store: Store, upload_dir: str, cutoff: float) -> int:
    """Remove the old photos no task uses. Most old photos are in use (a task keeps its photo
    for TASK_TTL), so their users are counted a folder at a time, in one round trip; only a
    photo found unused is locked and counted again before its file goes."""
    removed = 0
    for shard in _subfolders(os.path.join(upload_dir, "photos")):
        entries = _old_files(shard, cutoff)
        for entry, users in zip(entries, store.photo_user_counts([entry.name for entry in entries])):
            if users == 0:
                with store.photo_lock(entry.name):
                    if store.photo_users(entry.name) == 0:
                        photos.remove(entry.path)
                        removed += 1
    return removed


def _sweep_results(store: Store, upload_dir: str, cutoff: float) -> int:
    entries = _old_files(results.results_dir(upload_dir), cutoff)
    named = store.named_result_files([e.name for e in entries])
    for entry, is_named in zip(entries, named):
        if not is_named:
            photos.remove(entry.path)
    return named.count(False)


def _subfolders(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    return [e.path for e in os.scandir(folder) if e.is_dir()]
