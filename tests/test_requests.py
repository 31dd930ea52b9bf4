"""Scoring requests, task states, dedupe and DELETE, as a user sees them over HTTP."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time

import pytest
from rq import Queue

from harness import Service, files_under, make_photo, noisy_photo, wait_for
from src.local.simulator import expected_score

NAME = "Ann Lee"


def first_calls(scorer) -> list[dict]:
    """The scorer calls that started a task (name + photo), not the polls."""
    return [call for call in scorer.calls() if "name" in call["fields"]]


def polls(scorer) -> list[dict]:
    return [call for call in scorer.calls() if "retry_id" in call["fields"]]


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def stored_photos(service) -> set[str]:
    return {path for path in files_under(service.settings.upload_dir) if path.startswith("photos")}


def create(service, photo=None, name=NAME, **kw):
    answer = service.post(make_photo(1) if photo is None else photo, name=name, **kw)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "received"
    return answer.json()["task"]


# --- POST: a new task ---------------------------------------------------------------------

def test_new_task_is_received_with_location(service):
    answer = service.post(make_photo(1), name=NAME)
    assert answer.status_code == 202
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    task = body["task"]
    assert isinstance(task, int) and task > 0
    assert body == {"status": "received", "task": task, "result": None}
    assert answer.headers["Location"] == f"/?task_id={task}"


@pytest.mark.parametrize("side", [150, 300, 600])
def test_photos_of_hundreds_of_kilobytes_are_accepted_with_any_fields(service, side):
    """Regression: the multipart parser's buffer limit once refused most photos over 64 KiB."""
    for seed in range(3):
        photo = noisy_photo("PNG", (side, side), seed)
        assert service.post(photo, name=NAME).status_code == 202
        assert service.post(photo, width=100, height=100, fit="cover", format="webp").status_code == 202


def test_new_tasks_get_distinct_numbers(service):
    first = create(service, make_photo(1))
    second = create(service, make_photo(2))
    assert second != first


# --- GET: waiting, ready, not found -------------------------------------------------------

def test_get_while_waiting_answers_wait_with_retry_after(service, scorer):
    scorer.configure(wait_rounds=3)
    task = create(service)
    answer = service.get(task)
    assert answer.status_code == 202
    assert answer.headers["Content-Type"].startswith("application/json")
    assert re.fullmatch(r"[0-9]+", answer.headers.get("Retry-After", "")), answer.headers
    body = answer.json()
    assert body["status"] == "wait"
    assert body["task"] == task
    assert body["result"] is None
    assert isinstance(body["progress"], int) and not isinstance(body["progress"], bool)
    assert 0 <= body["progress"] <= 99


def test_progress_never_goes_down_while_waiting(service, scorer):
    scorer.configure(wait_rounds=2)
    task = create(service)
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = service.get(task)
        seen.append(answer.json()["progress"])
        if answer.status_code != 202:
            break
        time.sleep(0.1)
    assert seen == sorted(seen)
    assert seen[-1] == 100


def test_get_ready_answers_the_score(service, scorer):
    photo = make_photo(3)
    task = create(service, photo)
    answer = service.wait_done(task)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body["status"] == "ready"
    assert body["task"] == task
    assert is_number(body["result"])
    assert body["result"] == pytest.approx(expected_score(NAME, photo))
    assert body["progress"] == 100


def test_ready_after_wait_rounds(service, scorer):
    scorer.configure(wait_rounds=1)
    photo = make_photo(4)
    task = create(service, photo)
    body = service.wait_done(task).json()
    assert body["status"] == "ready"
    assert body["result"] == pytest.approx(expected_score(NAME, photo))
    assert len(polls(scorer)) == 1


def test_result_sent_as_string_is_a_number(service, scorer):
    scorer.configure(result_as="string")
    photo = make_photo(5)
    task = create(service, photo)
    body = service.wait_done(task).json()
    assert body["status"] == "ready"
    assert is_number(body["result"])
    assert body["result"] == pytest.approx(expected_score(NAME, photo))


def test_status_word_success_means_ready(service, scorer):
    scorer.configure(status_word="success")
    photo = make_photo(6)
    task = create(service, photo)
    answer = service.wait_done(task)
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ready"
    assert body["result"] == pytest.approx(expected_score(NAME, photo))
    assert body["progress"] == 100


def test_get_unknown_task_is_not_found(service):
    answer = service.get(987654)
    assert answer.status_code == 404
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == {"status": "not_found", "task": 987654, "result": None}


def test_get_answers_carry_kind_and_created_at(service, scorer):
    scorer.configure(wait_rounds=3)
    task = create(service)
    waiting = service.get(task).json()
    assert waiting["status"] == "wait"
    assert "kind" in waiting and "created_at" in waiting
    scorer.configure(wait_rounds=0)
    ready_task = create(service, make_photo(7))
    ready = service.wait_done(ready_task).json()
    assert ready["status"] == "ready"
    assert "kind" in ready and "created_at" in ready


# --- dedupe -------------------------------------------------------------------------------

def test_same_photo_and_name_when_ready_answers_the_result(service, scorer, redis_client):
    photo = make_photo(8)
    task = create(service, photo, "Ann Lee")
    result = service.wait_done(task).json()["result"]
    calls_before = len(scorer.calls())
    seq_before = redis_client.get("pt:task_seq")

    answer = service.post(photo, name="  ann   LEE ")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "task": task, "result": result}
    time.sleep(0.3)
    assert len(scorer.calls()) == calls_before
    assert redis_client.get("pt:task_seq") == seq_before
    assert create(service, make_photo(9)) == task + 1


def test_same_photo_and_name_while_running_answers_wait(service, scorer, redis_client):
    scorer.configure(wait_rounds=3)
    photo = make_photo(10)
    task = create(service, photo, "Ann Lee")
    seq_before = redis_client.get("pt:task_seq")

    answer = service.post(photo, name="ANN LEE")
    assert answer.status_code == 202
    assert answer.headers["Location"] == f"/?task_id={task}"
    assert answer.json() == {"status": "wait", "task": task, "result": None}
    assert redis_client.get("pt:task_seq") == seq_before


def test_other_name_makes_a_new_task(service):
    photo = make_photo(11)
    first = create(service, photo, "Ann Lee")
    second = create(service, photo, "Bob Lee")
    assert second != first


def test_other_photo_makes_a_new_task(service):
    first = create(service, make_photo(12), NAME)
    second = create(service, make_photo(13), NAME)
    assert second != first


def test_other_user_makes_a_new_task(make_service):
    service = make_service(api_keys="alice:k1,bob:k2")
    photo = make_photo(14)
    alice = service.post(photo, name=NAME, headers={"Authorization": "Bearer k1"})
    bob = service.post(photo, name=NAME, headers={"Authorization": "Bearer k2"})
    assert alice.status_code == 202 and alice.json()["status"] == "received"
    assert bob.status_code == 202 and bob.json()["status"] == "received"
    assert bob.json()["task"] != alice.json()["task"]


def test_open_mode_users_are_addresses_behind_trusted_proxies(make_service):
    service = make_service(trusted_proxies=1)
    photo = make_photo(15)
    first = service.post(photo, name=NAME, headers={"X-Forwarded-For": "198.51.100.1"})
    other = service.post(photo, name=NAME, headers={"X-Forwarded-For": "198.51.100.2"})
    assert first.json()["status"] == "received" and other.json()["status"] == "received"
    assert other.json()["task"] != first.json()["task"]


def test_forwarded_for_is_ignored_without_trusted_proxies(service):
    photo = make_photo(16)
    first = service.post(photo, name=NAME, headers={"X-Forwarded-For": "198.51.100.1"})
    again = service.post(photo, name=NAME, headers={"X-Forwarded-For": "198.51.100.2"})
    assert first.json()["status"] == "received"
    assert again.json()["task"] == first.json()["task"]


def test_same_request_after_failure_makes_a_new_task(service, scorer):
    scorer.configure(faults=["reject"])
    photo = make_photo(15)
    task = create(service, photo)
    failed = service.wait_done(task)
    assert failed.status_code == 200
    assert failed.json()["status"] == "failed"

    again = service.post(photo, name=NAME)
    assert again.status_code == 202
    assert again.json()["status"] == "received"
    assert again.json()["task"] != task
    assert service.wait_done(again.json()["task"]).json()["status"] == "ready"


def test_concurrent_identical_posts_make_one_task(service, scorer):
    photo = make_photo(16)
    answers = [None] * 16
    barrier = threading.Barrier(16)

    def send(i):
        barrier.wait()
        answers[i] = service.post(photo, name=NAME)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(answer.status_code in (200, 202) for answer in answers), [a.text for a in answers]
    tasks = {answer.json()["task"] for answer in answers}
    assert len(tasks) == 1
    received = [answer for answer in answers if answer.json()["status"] == "received"]
    assert len(received) == 1
    assert service.wait_done(tasks.pop()).json()["status"] == "ready"
    assert len(first_calls(scorer)) == 1


# --- DELETE -------------------------------------------------------------------------------

def test_delete_ready_task(service):
    photo = make_photo(17)
    task = create(service, photo)
    assert service.wait_done(task).json()["status"] == "ready"

    answer = service.delete(task)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == {"status": "deleted", "task": task, "result": None}

    gone = service.get(task)
    assert gone.status_code == 404
    assert gone.json() == {"status": "not_found", "task": task, "result": None}
    again = service.delete(task)
    assert again.status_code == 404
    assert again.json() == {"status": "not_found", "task": task, "result": None}


def test_same_photo_after_delete_makes_a_new_task(service):
    photo = make_photo(18)
    task = create(service, photo)
    assert service.wait_done(task).json()["status"] == "ready"
    assert service.delete(task).status_code == 200

    answer = service.post(photo, name=NAME)
    assert answer.status_code == 202
    assert answer.json()["status"] == "received"
    assert answer.json()["task"] != task


def test_delete_removes_the_photo_file_of_its_last_task(service):
    task = create(service, make_photo(19))
    assert service.wait_done(task).json()["status"] == "ready"
    assert len(stored_photos(service)) == 1

    assert service.delete(task).status_code == 200
    assert stored_photos(service) == set()


def test_delete_keeps_a_photo_another_task_uses(service):
    photo = make_photo(20)
    first = create(service, photo, "Ann Lee")
    second = create(service, photo, "Bob Lee")
    assert service.wait_done(first).json()["status"] == "ready"
    assert service.wait_done(second).json()["status"] == "ready"
    kept = stored_photos(service)
    assert len(kept) == 1

    assert service.delete(first).status_code == 200
    assert stored_photos(service) == kept
    assert service.delete(second).status_code == 200
    assert stored_photos(service) == set()


def test_a_photo_sent_while_its_file_is_being_removed_is_kept(service, redis_client):
    """A release that found no user left removes the file under the photo's lock; a task
    claimed meanwhile puts its upload in place only after that, so the file stays."""
    photo = make_photo(22)
    digest = hashlib.sha256(photo).hexdigest()
    first = create(service, photo)
    assert service.wait_done(first).json()["status"] == "ready"
    (stored,) = stored_photos(service)

    with redis_client.lock(f"pt:photo_lock:{digest}", timeout=30):  # as the release does
        redis_client.srem(f"pt:photo:{digest}", first)  # ... and finds no user left
        answers = []
        sender = threading.Thread(target=lambda: answers.append(service.post(photo, name="Bob Lee")))
        sender.start()
        wait_for(lambda: redis_client.scard(f"pt:photo:{digest}") == 1)  # the new task is claimed
        os.unlink(os.path.join(service.settings.upload_dir, stored))  # the release removes the file
    sender.join()

    assert answers[0].status_code == 202, answers[0].text
    assert stored_photos(service) == {stored}
    assert service.wait_done(answers[0].json()["task"]).json()["status"] == "ready"


def test_delete_waiting_task_stops_it(make_service, scorer):
    service = make_service(scorer_retry_delay=0.2)
    scorer.configure(wait_rounds=5)
    task = create(service, make_photo(21))
    wait_for(lambda: len(first_calls(scorer)) == 1)
    assert service.get(task).status_code == 202

    answer = service.delete(task)
    assert answer.status_code == 200
    assert answer.json() == {"status": "deleted", "task": task, "result": None}
    calls_at_delete = len(scorer.calls())

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert service.get(task).status_code == 404
        time.sleep(0.2)
    assert len(scorer.calls()) <= calls_at_delete + 1  # at most one poll already in flight
    assert stored_photos(service) == set()


def test_finished_task_expires_with_its_files_after_task_ttl(make_service):
    service = make_service(task_ttl=1)
    task = create(service, make_photo(40))
    assert service.wait_done(task).json()["status"] == "ready"
    assert stored_photos(service)

    wait_for(lambda: service.get(task).status_code == 404, timeout=5)
    wait_for(lambda: not stored_photos(service), timeout=5)
    again = service.post(make_photo(40), name=NAME)
    assert again.status_code == 202 and again.json()["task"] != task


def test_an_expire_job_scheduled_by_an_earlier_version_still_removes_its_files(make_service, redis_client):
    """Before `pt:expiring`, each finished task had an RQ job on the scheduler for its end;
    a store upgraded with such jobs in it must still have them done."""
    service = make_service(task_ttl=3600)
    task = create(service, make_photo(41))
    assert service.wait_done(task).json()["status"] == "ready"
    digest = redis_client.hget(f"pt:task:{task}", "digest").decode()
    redis_client.zrem("pt:expiring", task)  # as the earlier version left it: no entry here...
    redis_client.hdel("pt:expiring_files", task)
    redis_client.delete(f"pt:task:{task}")  # ...its keys expired by Redis...
    Queue("score", connection=redis_client).enqueue("src.jobs.expire.expire_task", task, digest, "")  # ...its job due
    wait_for(lambda: not stored_photos(service), timeout=10)
    assert redis_client.scard(f"pt:photo:{digest}") == 0


def test_a_starting_web_process_sweeps_dead_processes_spools_not_live_ones(service):
    tmp_dir = os.path.join(service.settings.upload_dir, "tmp")
    live_dir = service.server.application.spools.path  # `service`'s app holds its lock
    dead_dir = os.path.join(tmp_dir, "otherhost-4242-0123abcd")  # left by a killed process
    os.makedirs(dead_dir)
    open(dead_dir + ".lock", "w").close()
    for spool in (os.path.join(live_dir, "upload-live"), os.path.join(dead_dir, "upload-dead")):
        open(spool, "wb").close()

    restarted = Service(service.env)
    try:
        assert not os.path.exists(dead_dir) and not os.path.exists(dead_dir + ".lock")
        assert os.path.exists(os.path.join(live_dir, "upload-live"))  # a request in flight
    finally:
        restarted.stop()
