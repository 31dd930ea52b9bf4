"""The Lua of sharing the service fairly against a real valkey: the limits inside the claim,
counts that follow the scripts that change what they count, and backlogs taken in turns."""

from __future__ import annotations

import pytest

from src.metrics import task_created
from src.store import Store
from src.tasks.dedupe import dedupe_key

OFF = (0, 0, 0, 0, 0)
CREATED = task_created("resize")


@pytest.fixture
def store(redis_client):
    return Store(redis_client, task_ttl=60, lease=10)


def claim(store, owner="ann", digest="ab" * 32, settings="{}", limits=OFF, photo_bytes=100, kind="resize"):
    return store.claim(dedupe_key(owner, kind, settings, digest), digest, owner=owner, photo_bytes=photo_bytes,
                       limits=limits, kind=kind)


def take(store):
    return store.take_turns(("rq:queue:score", "rq:queue:resize"), "rq:workers", 16, 512)


def test_a_photo_counts_once_per_user_and_a_result_until_its_task_goes(store):
    first = claim(store)
    second = claim(store, settings='{"w": 2}')
    assert store.counts("ann") == {"waiting": 2, "bytes": 100, "service_waiting": 2}
    assert store.finish(first.task_id, {"url": "/files/x"}, fence=first.job_id, result_file="x.png",
                        result_bytes=40)
    assert store.counts("ann") == {"waiting": 1, "bytes": 140, "service_waiting": 1}
    store.delete(first.task_id, "ann")
    assert store.counts("ann")["bytes"] == 140  # released with its files
    store.end_expiry(first.task_id)
    store.end_expiry(first.task_id)  # once only
    assert store.counts("ann") == {"waiting": 1, "bytes": 100, "service_waiting": 1}
    store.delete(second.task_id, "ann")
    store.end_expiry(second.task_id)
    assert store.counts("ann") == {"waiting": 0, "bytes": 0, "service_waiting": 0}


def test_each_limit_refuses_before_anything_is_stored(store, redis_client):
    assert claim(store, limits=(1, 0, 0, 0, 0)).is_new
    keys = set(redis_client.keys("*"))
    assert claim(store, digest="cd" * 32, limits=(1, 0, 0, 0, 0)).refused == "too_many_tasks"
    assert claim(store, digest="cd" * 32, limits=(0, 0, 0, 150, 0)).refused == "quota_exceeded"
    assert claim(store, owner="bob", digest="cd" * 32, limits=(0, 0, 0, 0, 1)).refused == "overloaded"
    assert set(redis_client.keys("*")) == keys
    assert claim(store, limits=(1, 0, 0, 1, 1)).state == "queued"  # a dedupe hit is never refused


def test_the_rate_allows_a_burst_then_says_when_the_next_is_allowed(store):
    limits = (0, 0.5, 3, 0, 0)
    assert all(claim(store, digest=f"{i:064x}", limits=limits).is_new for i in range(3))
    refused = claim(store, digest="ff" * 32, limits=limits)
    assert (refused.refused, refused.retry_after) == ("rate_limited", 2)


def test_backlogs_are_taken_one_task_per_user_per_turn(store, redis_client):
    redis_client.sadd("rq:workers", *[f"w{i}" for i in range(8)])  # room for four jobs
    tasks = {owner: [claim(store, owner, f"{owner}{i}".ljust(64, "0")).task_id for i in range(3)]
             for owner in ("ann", "bob")}
    for owner, ids in tasks.items():
        for task_id in ids:
            assert store.join_backlog(task_id, "resize", owner, CREATED)
    resizes, batches = take(store)
    assert list(resizes) == [tasks["ann"][0], tasks["bob"][0], tasks["ann"][1], tasks["bob"][1]]
    assert not batches
    assert all(store.get(t)["job_id"] == job and "turn" not in store.get(t) for t, job in resizes.items())
    assert store.get(tasks["ann"][2])["turn"] == "backlog"


def test_a_task_is_started_once_and_counted_once_whichever_post_starts_it(store, redis_client):
    """A POST that dedupes onto a task its own POST never started (that POST died between its
    claim and its start, or Redis lost the start) is told so, and starts it; the first start
    counts, a second one changes nothing."""
    first = claim(store)
    again = claim(store)
    assert (again.task_id, again.state, again.starting) == (first.task_id, "queued", True)
    assert store.join_backlog(first.task_id, "resize", "ann", CREATED)
    assert not store.join_backlog(first.task_id, "resize", "ann", CREATED)
    assert redis_client.lrange("pt:backlog:resize:ann", 0, -1) == [str(first.task_id).encode()]
    assert redis_client.hget(*CREATED) == b"1"
    assert not claim(store).starting
