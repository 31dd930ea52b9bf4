"""Scoring tasks end to end: what a user sees over HTTP, and what the remote scorer (the
simulator, a real HTTP peer) receives. Real waitress, real RQ workers with RQ's scheduler,
a real valkey-server; no mocks.

A poll due after a delay d is enqueued by the dispatcher within milliseconds of d; the timing
bounds below still leave room for a busy machine.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import uuid

import pytest
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FinishedJobRegistry

from harness import NAME, assert_failed, assert_ready, files_under, make_photo, start_task, wait_until

# --- helpers ------------------------------------------------------------------------------





def is_first_call(call: dict, photo: bytes, name: str = NAME) -> bool:
    """The call carries the name and the whole photo (and no retry_id)."""
    sent = call["files"].get("photo")
    return (call["fields"] == {"name": name} and set(call["files"]) == {"photo"}
            and sent["sha256"] == hashlib.sha256(photo).hexdigest() and sent["size"] == len(photo))


def gaps(calls: list[dict]) -> list[float]:
    return [later["time"] - earlier["time"] for earlier, later in zip(calls, calls[1:])]


def jobs_of(registry, task: int) -> list[Job]:
    """The jobs in an RQ registry whose description names `task`."""
    found = []
    for job_id in registry.get_job_ids():
        try:
            job = Job.fetch(job_id, connection=registry.connection)
        except NoSuchJobError:
            continue
        if re.search(rf"(?<!\d){task}(?!\d)", job.description or ""):
            found.append(job)
    return found


def closed_port() -> socket.socket:
    """A loopback port that is bound but not listening: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


# --- the first call -----------------------------------------------------------------------

def test_first_call_sends_trimmed_name_and_photo_as_multipart(service, scorer):
    photo = make_photo(1)
    task = start_task(service, photo, name="  Ann Lee \t", filename="portrait.jpg")
    assert_ready(service, task, photo)

    calls = scorer.calls()
    assert len(calls) == 1
    call = calls[0]
    assert call["fields"] == {"name": "Ann Lee"}  # a text part, trimmed
    assert call["files"] == {"photo": {
        "filename": "portrait.jpg",
        "content_type": "image/jpeg",
        "size": len(photo),
        "sha256": hashlib.sha256(photo).hexdigest(),
    }}


def test_string_result_and_success_word_give_a_number(service, scorer):
    scorer.configure(result_as="string", status_word="success")
    photo = make_photo(2)
    task = start_task(service, photo)
    body = assert_ready(service, task, photo)
    assert isinstance(body["result"], float)


# --- waiting ------------------------------------------------------------------------------

def test_wait_rounds_poll_with_only_the_retry_id_after_the_delay(make_service, scorer):
    service = make_service(scorer_retry_delay=1)
    scorer.configure(wait_rounds=3)
    photo = make_photo(3)
    task = start_task(service, photo)
    assert_ready(service, task, photo, timeout=20)

    calls = scorer.calls()
    assert len(calls) == 4
    assert is_first_call(calls[0], photo)
    assert all(call["mimetype"] == "multipart/form-data" for call in calls), calls
    polls = calls[1:]
    for poll in polls:
        assert set(poll["fields"]) == {"retry_id"}, poll
        assert poll["files"] == {}, poll
    retry_ids = {poll["fields"]["retry_id"] for poll in polls}
    assert len(retry_ids) == 1  # the one id the scorer gave (it answers ready only to it)
    uuid.UUID(retry_ids.pop())
    for gap in gaps(calls):
        assert gap >= 1.0, gaps(calls)


def test_integer_retry_id_is_sent_back_as_the_same_number(service, scorer):
    scorer.configure(wait_rounds=1, retry_id_as="int")
    photo = make_photo(4)
    task = start_task(service, photo)
    assert_ready(service, task, photo)

    calls = scorer.calls()
    assert len(calls) == 2
    assert is_first_call(calls[0], photo)
    assert calls[1]["fields"] == {"retry_id": "1"}  # the simulator's first id is the number 1
    assert calls[1]["files"] == {}


def test_progress_while_waiting_never_goes_down_then_100(service, scorer):
    scorer.configure(wait_rounds=4)
    photo = make_photo(5)
    task = start_task(service, photo)

    seen = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answer = service.get(task)
        body = answer.json()
        if answer.status_code != 202:
            break
        assert body["status"] == "wait" and body["task"] == task and body["result"] is None, body
        assert answer.headers.get("Retry-After", "").isdigit(), answer.headers
        progress = body["progress"]
        assert isinstance(progress, int) and not isinstance(progress, bool), body
        assert 0 <= progress <= 99, body
        seen.append(progress)
        time.sleep(0.1)
    assert answer.status_code == 200, answer.text
    assert body["status"] == "ready" and body["progress"] == 100
    assert len(seen) >= 5  # a 4-round wait lasts seconds
    assert seen == sorted(seen), seen


# --- faults -------------------------------------------------------------------------------

@pytest.mark.parametrize("faults", [["503", "garbage"], ["500", "429"], ["bad_result", "drop"]],
                         ids="+".join)
def test_faults_are_retried_until_ready(service, scorer, faults):
    scorer.configure(faults=faults)
    photo = make_photo(6)
    task = start_task(service, photo)
    assert_ready(service, task, photo)

    calls = scorer.calls()
    assert len(calls) == len(faults) + 1
    assert all(is_first_call(call, photo) for call in calls)  # no answer yet: the photo again


def test_backoff_grows_between_faults(make_service, scorer):
    service = make_service(scorer_retry_delay=1)
    scorer.configure(faults=["503", "503", "503"])
    photo = make_photo(7)
    task = start_task(service, photo)
    assert_ready(service, task, photo, timeout=25)

    calls = scorer.calls()
    assert len(calls) == 4
    between = gaps(calls)
    print(f"gaps between calls with 503 x3 and SCORER_RETRY_DELAY=1: {[round(g, 2) for g in between]}")
    assert between[0] >= 1.0, between
    assert between[1] >= 2.0, between
    assert between[2] >= 3.5, between
    # non-decreasing, allowing for the scheduler's whole-second rounding
    for earlier, later in zip(between, between[1:]):
        assert later >= earlier - 1.0, between


def test_timeout_of_one_call_is_retried(make_service, scorer):
    service = make_service(scorer_timeout=0.5)
    scorer.configure(faults=["slow"], slow_seconds=1.5)
    photo = make_photo(8)
    task = start_task(service, photo)
    assert_ready(service, task, photo)

    calls = scorer.calls()
    assert len(calls) == 2
    assert all(is_first_call(call, photo) for call in calls)
    assert gaps(calls)[0] >= 0.5


# --- rejection ----------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["reject", "error_status"])
def test_rejection_fails_the_task_at_once(service, scorer, fault):
    scorer.configure(faults=[fault])
    photo = make_photo(9)
    task = start_task(service, photo)
    body = assert_failed(service, task, "scorer_rejected", timeout=10)
    assert set(body) >= {"status", "task", "result", "progress", "error"}
    assert len(scorer.calls()) == 1


def test_a_scorer_that_forgot_the_task_is_asked_again_from_the_start(service, scorer):
    scorer.configure(wait_rounds=2)
    photo = make_photo(10)
    task = start_task(service, photo)
    assert wait_until(lambda: len(scorer.calls()) >= 1, timeout=10)
    scorer.forget()  # it restarted: the retry_id it gave is unknown now (404)
    assert_ready(service, task, photo, timeout=15)

    fields = [set(call["fields"]) for call in scorer.calls()]
    assert fields[0] == {"name"} and fields[1] == {"retry_id"}
    assert {"name"} in fields[1:], "the task started over with the photo"


def test_a_scorer_that_keeps_forgetting_fails_the_task_after_three_restarts(service, scorer):
    scorer.configure(wait_rounds=1, forgetful=True)  # every poll: 404 unknown retry_id
    task = start_task(service, make_photo(12))
    body = assert_failed(service, task, "scorer_rejected", timeout=15)
    assert "forgotten" in body["error"]["message"]
    starts = [call for call in scorer.calls() if "name" in call["fields"]]
    assert len(starts) == 4  # the first call and 3 restarts


# --- the deadline -------------------------------------------------------------------------

def test_endless_wait_fails_at_the_deadline(make_service, scorer):
    service = make_service(scorer_deadline=3)
    scorer.configure(wait_rounds=100)
    photo = make_photo(11)
    began = time.monotonic()
    task = start_task(service, photo)
    assert_failed(service, task, "scorer_timeout", timeout=10)
    took = time.monotonic() - began
    assert took <= 6.5, took
    assert len(scorer.calls()) >= 2  # it did keep polling until then


def test_scorer_always_failing_fails_at_the_deadline_with_the_last_error(make_service, scorer):
    service = make_service(scorer_deadline=3)
    scorer.configure(always="503")
    photo = make_photo(12)
    began = time.monotonic()
    task = start_task(service, photo)
    body = assert_failed(service, task, "scorer_timeout", timeout=10)
    assert time.monotonic() - began <= 6.5
    assert "503" in body["error"]["message"], body


def test_unreachable_scorer_fails_at_the_deadline(make_service):
    sock = closed_port()
    try:
        port = sock.getsockname()[1]
        service = make_service(scorer_url=f"http://127.0.0.1:{port}/api/", scorer_deadline=3)
        photo = make_photo(13)
        began = time.monotonic()
        task = start_task(service, photo)
        assert_failed(service, task, "scorer_timeout", timeout=10)
        assert time.monotonic() - began <= 6.5
    finally:
        sock.close()


# --- waiting does not hold a worker -------------------------------------------------------

def test_many_waiting_tasks_share_two_workers(make_service, scorer):
    service = make_service(workers=2, scorer_retry_delay=0.5)
    scorer.configure(wait_rounds=3)

    photo = make_photo(200)
    began = time.monotonic()
    task = start_task(service, photo)
    assert_ready(service, task, photo)
    single = time.monotonic() - began

    photos = [make_photo(seed) for seed in range(300, 324)]
    assert len({hashlib.sha256(p).hexdigest() for p in photos}) == 24
    began = time.monotonic()
    tasks = [start_task(service, p) for p in photos]
    for task, p in zip(tasks, photos):
        assert_ready(service, task, p, timeout=60)
    total = time.monotonic() - began

    print(f"\none task with 3 wait rounds: {single:.2f} s; 24 such tasks on 2 workers: {total:.2f} s")
    assert total < single * 3 + 3, (single, total)
    assert len(scorer.calls()) == 4 * 25


# --- monitoring ---------------------------------------------------------------------------

def test_score_job_is_on_the_score_queue_and_names_its_task(service, scorer, redis_client):
    photo = make_photo(14)
    task = start_task(service, photo)
    assert_ready(service, task, photo)

    registry = FinishedJobRegistry("score", connection=redis_client)
    jobs = wait_until(lambda: jobs_of(registry, task), timeout=3)
    assert jobs, registry.get_job_ids()
    assert all(job.origin == "score" for job in jobs)
    assert Queue("score", connection=redis_client).name == "score"


# --- deletion -----------------------------------------------------------------------------

def test_delete_of_a_waiting_task_cancels_its_next_run(service, scorer, redis_client):
    scorer.configure(wait_rounds=100)
    photo = make_photo(15)
    task = start_task(service, photo)
    assert wait_until(lambda: len(scorer.calls()) >= 2, timeout=10)  # polling by now
    assert wait_until(lambda: redis_client.zscore("pt:due", task), timeout=5), "no next run seen"

    answer = service.delete(task)
    assert answer.status_code == 200
    assert answer.json() == {"status": "deleted", "task": task, "result": None}
    calls_at_delete = len(scorer.calls())
    assert redis_client.zscore("pt:due", task) is None
    assert service.get(task).status_code == 404

    time.sleep(3)
    assert len(scorer.calls()) <= calls_at_delete + 1  # at most one that was in flight
    assert redis_client.zscore("pt:due", task) is None
    assert service.get(task).status_code == 404


def test_a_job_that_raises_fails_its_task_which_then_expires(make_service, redis_client):
    service = make_service(workers=0, task_ttl=2)
    task = start_task(service, make_photo(90))
    for path in files_under(service.settings.upload_dir):  # the worker will not find the photo
        os.unlink(os.path.join(service.settings.upload_dir, path))
    service.start_workers(1)

    assert_failed(service, task, "internal_error")
    assert wait_until(lambda: service.get(task).status_code == 404 and not redis_client.keys("pt:photo:*"),
                      timeout=6)
