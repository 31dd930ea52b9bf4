"""The store's Lua scripts against a real valkey (the one the test session starts): a task
claimed once per dedupe key, and writes fenced by the job the task names."""

from __future__ import annotations

import pytest

from src.store import Store
from src.tasks.dedupe import dedupe_key


@pytest.fixture
def store(redis_client):
    return Store(redis_client, task_ttl=60, lease=10)


def claim(store, owner="ann", digest="ab" * 32):
    return store.claim(dedupe_key(owner, "resize", "{}", digest), digest, kind="resize", owner=owner)


def test_one_task_per_dedupe_key_while_it_lives(store):
    first = claim(store)
    assert first.is_new and first.job_id.startswith(f"task-{first.task_id}-")
    again = claim(store)
    assert (again.task_id, again.state, again.is_new) == (first.task_id, "queued", False)
    assert claim(store, owner="bob").task_id != first.task_id


def test_a_failed_task_frees_its_dedupe_key(store):
    first = claim(store)
    assert store.fail(first.task_id, "internal_error", "x", fence=first.job_id)
    assert claim(store).task_id != first.task_id


def test_writes_are_fenced_by_the_job_the_task_names(store):
    task = claim(store)
    assert store.update(task.task_id, 5, fence="task-other") is None
    assert store.update(task.task_id, 40, fence=task.job_id) == 40
    assert store.update(task.task_id, 10, fence=task.job_id) == 40  # progress never goes down
    assert store.finish(task.task_id, {"url": "/files/x"}, fence="task-other") is None
    assert store.finish(task.task_id, {"url": "/files/x"}, fence=task.job_id) == "resize"
    assert store.finish(task.task_id, {"url": "/files/y"}, fence=task.job_id) is None  # once


def test_a_replaced_job_can_no_longer_write(store):
    task = claim(store)
    assert store.replace_job(task.task_id, task.job_id, "task-new", max_losses=3) == "replaced"
    assert store.update(task.task_id, 50, fence=task.job_id) is None
    assert store.replace_job(task.task_id, task.job_id, "task-newer", max_losses=3) == "moved"
    assert store.replace_job(task.task_id, "task-new", "task-2", max_losses=2) == "fail"


def test_delete_is_for_the_owner_and_frees_the_dedupe_key(store):
    task = claim(store)
    assert store.delete(task.task_id, owner="bob") is None
    assert store.delete(task.task_id, owner="ann")["owner"] == "ann"
    assert store.get(task.task_id) is None
    assert claim(store).task_id != task.task_id
