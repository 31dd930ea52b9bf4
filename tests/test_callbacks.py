"""Callbacks ("Results pushed"): a receiver the test runs (a real HTTP server on loopback,
hence CALLBACK_ALLOW_PRIVATE=1 where it is called), the real web app, workers and the
callback deliverer as processes; signatures checked with the spec's own `standardwebhooks`."""

from __future__ import annotations

import base64
import os
import signal
import socket
import threading
import time

import pytest
import standardwebhooks

from harness import Receiver, Service, callback_event, make_photo, wait_for
from src.callbacks.client import CallbackClient
from src.local.embedded_redis import EmbeddedRedis, free_port

SECRET = "whsec_" + base64.b64encode(b"callbacks-test-secret-32-bytes!!").decode()
NAME = "Ann Lee"


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


def callback_service(make_service, workers: int = 1, **settings) -> Service:
    settings = {"webhook_secret": SECRET, "callback_allow_private": 1, "webhook_retry_schedule": "0.2,0.4",
                **settings}
    service = make_service(workers=workers, **settings)
    service.start_deliverer()
    return service


def resize(service, url: str, seed: int, **fields):
    return service.post(make_photo(seed), width=16, callback_url=url, **fields)


def ended(service, answer) -> dict:
    assert answer.status_code == 202, answer.text
    done = service.wait_done(answer.json()["task"])
    assert done.status_code == 200, done.text
    return done.json()


def callbacks_when_settled(service, task: int, timeout: float = 15) -> list[dict]:
    """GET's `callbacks` once none is pending any more."""
    def settled():
        body = service.get(task).json()
        return body if all(c["state"] != "pending" for c in body.get("callbacks", [{"state": "pending"}])) else None
    wait_for(settled, timeout)
    return service.get(task).json()["callbacks"]


def verified(request: dict) -> dict:
    """The callback's body, once `standardwebhooks` has checked its signature and time."""
    return standardwebhooks.Webhook(SECRET).verify(request["body"], request["headers"])


# --- what is sent ---------------------------------------------------------------------------

def test_a_finished_task_calls_back_signed_with_what_a_get_answers(make_service, receiver):
    service = callback_service(make_service)
    url = receiver.plan("/hook?token=abc", 204)
    answer = resize(service, url, seed=1)
    task = answer.json()["task"]
    got = ended(service, answer)
    call, = receiver.wait_calls("/hook?token=abc", 1)
    assert call["headers"]["Content-Type"] == "application/json"
    assert call["headers"]["webhook-id"].startswith("msg_")
    assert abs(int(call["headers"]["webhook-timestamp"]) - time.time()) < 10
    event = verified(call)
    assert event == callback_event(call)
    assert event["type"] == "task.ready"
    assert event["timestamp"] == got["updated_at"]  # the task's end, ISO 8601 UTC
    assert event["timestamp"].endswith("Z")
    got.pop("callbacks")
    assert event["data"] == got  # what a GET answers (without the list of callbacks)
    assert callbacks_when_settled(service, task) == [
        {"url": url, "state": "delivered", "attempts": 1, "last_status": 204}]


def test_a_failed_task_calls_back_task_failed(make_service, receiver, scorer):
    service = callback_service(make_service)
    scorer.configure(faults=["reject"])
    url = receiver.plan("/failed", 200)
    answer = service.post(make_photo(2), name=NAME, callback_url=url)
    ended(service, answer)
    event = verified(receiver.wait_calls("/failed", 1)[0])
    assert event["type"] == "task.failed"
    assert event["data"]["status"] == "failed" and event["data"]["error"]["code"] == "scorer_rejected"


def test_a_task_without_callbacks_shows_none(make_service, receiver):
    service = callback_service(make_service)
    body = ended(service, service.post(make_photo(3), width=16))
    assert "callbacks" not in body


# --- retries --------------------------------------------------------------------------------

def test_failures_are_tried_again_on_the_schedule_with_the_same_webhook_id(make_service, receiver):
    service = callback_service(make_service)
    url = receiver.plan("/flaky", 503, 500, 200)
    answer = resize(service, url, seed=4)
    calls = receiver.wait_calls("/flaky", 3)
    assert len({c["headers"]["webhook-id"] for c in calls}) == 1
    assert calls[1]["at"] - calls[0]["at"] >= 0.2
    assert calls[2]["at"] - calls[1]["at"] >= 0.4
    for call in calls:
        verified(call)  # each attempt signed with its own timestamp
    assert callbacks_when_settled(service, answer.json()["task"]) == [
        {"url": url, "state": "delivered", "attempts": 3, "last_status": 200}]
    counted = ('photo_tasks_callback_attempt_duration_seconds_count{outcome="pending"} 2.0',
               'photo_tasks_callback_attempt_duration_seconds_count{outcome="delivered"} 1.0')
    wait_for(lambda: all(line in service.fetch("/metrics").text for line in counted))


def test_after_the_last_step_it_gives_up(make_service, receiver):
    service = callback_service(make_service)
    url = receiver.plan("/down", 502)
    answer = resize(service, url, seed=5)
    assert callbacks_when_settled(service, answer.json()["task"]) == [
        {"url": url, "state": "failed", "attempts": 3, "last_status": 502}]
    time.sleep(0.8)
    assert len(receiver.calls("/down")) == 3  # the first, then one per step of "0.2,0.4"


def test_these_4xx_are_tried_again(make_service, receiver):
    service = callback_service(make_service, webhook_retry_schedule="0.2")
    urls = {status: receiver.plan(f"/busy{status}", status, 204) for status in (408, 425, 429)}
    answers = {status: resize(service, url, seed=6 + status) for status, url in urls.items()}
    for status, answer in answers.items():
        assert callbacks_when_settled(service, answer.json()["task"])[0]["state"] == "delivered"
        assert len(receiver.calls(f"/busy{status}")) == 2


def test_a_longer_retry_after_is_honoured(make_service, receiver):
    service = callback_service(make_service, webhook_retry_schedule="0.2")
    url = receiver.plan("/later", (503, {"Retry-After": "1"}, 0.0), 200)
    resize(service, url, seed=7)
    first, second = receiver.wait_calls("/later", 2)
    assert second["at"] - first["at"] >= 1.0


def test_a_receiver_that_is_not_there_is_tried_again_then_given_up(make_service):
    service = callback_service(make_service)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/nobody"
        answer = resize(service, url, seed=8)
        assert callbacks_when_settled(service, answer.json()["task"]) == [
            {"url": url, "state": "failed", "attempts": 3, "last_status": None}]


# --- answers that end delivery ------------------------------------------------------------

def test_410_other_4xx_and_redirects_end_delivery_at_once(make_service, receiver):
    service = callback_service(make_service)
    statuses = (410, 400, 404, 302, 307)
    urls = {status: receiver.plan(f"/end{status}", (status, {"Location": receiver.url + "/elsewhere"}, 0.0))
            for status in statuses}
    answers = {status: resize(service, url, seed=10 + status) for status, url in urls.items()}
    for status, answer in answers.items():
        assert callbacks_when_settled(service, answer.json()["task"]) == [
            {"url": urls[status], "state": "failed", "attempts": 1, "last_status": status}]
    time.sleep(0.8)  # past every step of the schedule
    for status in statuses:
        assert len(receiver.calls(f"/end{status}")) == 1
    assert receiver.calls("/elsewhere") == []  # a redirect is never followed


# --- deliveries never slow the work -------------------------------------------------------

def test_a_hanging_receiver_delays_no_task_and_no_other_receiver(make_service, receiver):
    """Twenty callbacks to a receiver that holds every call (more than the deliverer sends one
    receiver at once); a task that ends meanwhile, and its callback to another receiver, do
    not wait for it."""
    service = callback_service(make_service, webhook_timeout=8, webhook_retry_schedule="30")
    hanging = receiver.plan("/hang", (200, {}, 10.0))
    answers = [resize(service, hanging, seed=seed) for seed in range(100, 120)]
    for answer in answers:
        ended(service, answer)
    held = receiver.wait_calls("/hang", 1, timeout=8)
    other = Receiver()
    try:
        answer = resize(service, other.plan("/quick", 204), seed=120)
        task = ended(service, answer)  # the task ends while the callbacks hang
        call, = other.wait_calls("/quick", 1, timeout=8)
        assert call["at"] < held[0]["at"] + 8  # while the first hanging attempt was still held
        assert callbacks_when_settled(service, task["task"])[0]["state"] == "delivered"
    finally:
        other.stop()
    assert service.get(answers[0].json()["task"]).json()["callbacks"][0]["state"] == "pending"


# --- dedupe joins, DELETE -----------------------------------------------------------------

def test_a_post_that_joins_a_running_task_adds_its_callback_url(make_service, receiver, scorer):
    service = callback_service(make_service)
    scorer.configure(wait_rounds=4)
    first, second = receiver.plan("/first", 204), receiver.plan("/second", 204)
    photo = make_photo(30)
    answer = service.post(photo, name=NAME, callback_url=first)
    task = answer.json()["task"]
    for url in (second, first, second):  # the same URL twice is called once
        joined = service.post(photo, name=NAME, callback_url=url)
        assert joined.status_code == 202 and joined.json() == {"status": "wait", "task": task, "result": None}
    assert service.get(task).json()["callbacks"] == [
        {"url": first, "state": "pending", "attempts": 0, "last_status": None},
        {"url": second, "state": "pending", "attempts": 0, "last_status": None}]
    ended(service, answer)
    one, = receiver.wait_calls("/first", 1)
    two, = receiver.wait_calls("/second", 1)
    assert one["headers"]["webhook-id"] != two["headers"]["webhook-id"]  # unique per event and URL
    assert [c["state"] for c in callbacks_when_settled(service, task)] == ["delivered", "delivered"]

    # a POST answered 200 ready at once calls nothing: its answer is the result
    late = receiver.plan("/late", 204)
    ready = service.post(photo, name=NAME, callback_url=late)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    time.sleep(0.5)
    assert receiver.calls("/late") == []
    assert len(service.get(task).json()["callbacks"]) == 2
    assert len(receiver.calls("/first")) == len(receiver.calls("/second")) == 1


def test_delete_drops_pending_callbacks(make_service, receiver):
    service = callback_service(make_service, webhook_retry_schedule="1,1")
    url = receiver.plan("/unlucky", 503)
    answer = resize(service, url, seed=31)
    task = answer.json()["task"]
    receiver.wait_calls("/unlucky", 1)
    assert service.delete(task).status_code == 200
    time.sleep(2.5)  # past both steps
    assert len(receiver.calls("/unlucky")) == 1


# --- what a callback_url may be -----------------------------------------------------------

def test_callback_url_without_webhook_secret_is_refused(make_service, rejected, receiver):
    service = make_service()
    answer = rejected(service, lambda: resize(service, receiver.url + "/x", seed=40), 400, "callback_url")
    assert answer.json()["error"]["code"] == "invalid_field"
    assert "WEBHOOK_SECRET" in answer.json()["error"]["message"]


@pytest.mark.parametrize("url", [
    "ftp://example.com/hook", "/relative/hook", "example.com/hook", "http://", "",
    "http://user:password@example.com/hook", "http://user@example.com/hook",
    "https://example.com/" + "a" * 2030, "http://exa mple.com/", "http://example.com:99999/", "http://example.com:0/",
])
def test_malformed_callback_urls_are_refused(make_service, rejected, url):
    service = make_service(webhook_secret=SECRET)
    answer = rejected(service, lambda: service.post(make_photo(41), name=NAME, callback_url=url), 400, "callback_url")
    assert answer.json()["error"]["code"] == "invalid_field"


def refused_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/hook", f"http://localhost:{port}/hook", f"http://[::1]:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook", f"http://2130706433:{port}/hook", f"http://0.0.0.0:{port}/",
        "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/hook", "http://192.168.1.1/hook",
        "http://172.16.0.1/hook", "http://100.64.0.1/hook", "http://224.0.0.1/hook", "http://240.0.0.1/hook",
        "http://[fe80::1]/hook", "http://[fc00::1]/hook", "http://[::]/hook",
    ]


def test_private_addresses_are_refused_and_sent_nothing(make_service, rejected, receiver):
    service = make_service(webhook_secret=SECRET)
    port = int(receiver.url.rsplit(":", 1)[1])
    for seed, url in enumerate(refused_urls(port)):
        answer = rejected(service, lambda u=url, s=seed: resize(service, u, seed=50 + s), 400, "callback_url")
        assert answer.json()["error"]["code"] == "invalid_field", url
    assert receiver.calls() == []


def test_each_attempt_checks_the_address_again(receiver):
    """What a deliverer does at every attempt: a host that now resolves to a refused address
    gets no packet (the attempt counts as no answer, so it is tried again on the schedule)."""
    client = CallbackClient(timeout=2, allow_private=False)
    outcome = client.post(f"http://localhost:{receiver.url.rsplit(':', 1)[1]}/hook", b"{}", {})
    assert outcome.status is None and "loopback" in outcome.error
    assert receiver.calls() == []
    allowed = CallbackClient(timeout=2, allow_private=True).post(receiver.url + "/hook", b"{}", {})
    assert allowed.status == 204 and len(receiver.calls()) == 1


@pytest.fixture
def dripping_receiver():
    """A receiver that answers one header line every 0.3 s, for 6 s: each read is quick, the
    answer never whole within a short WEBHOOK_TIMEOUT."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip(conn):
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for _ in range(20):
                if stop.wait(0.3):
                    return
                conn.sendall(b"X-Drip: 1\r\n")
            conn.sendall(b"Content-Length: 0\r\n\r\n")

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/drip"
    stop.set()
    server.close()


def test_webhook_timeout_bounds_the_whole_attempt(dripping_receiver):
    """However slowly the answer comes, an attempt ends at WEBHOOK_TIMEOUT, as no answer."""
    began = time.monotonic()
    outcome = CallbackClient(timeout=1, allow_private=True).post(dripping_receiver, b"{}", {})
    assert outcome.status is None and "within 1 s" in outcome.error
    assert time.monotonic() - began < 3  # not the 6 s the receiver would take


# --- at least once through faults ---------------------------------------------------------

def test_a_deliverer_killed_mid_call_delivers_again_with_the_same_webhook_id(make_service, receiver):
    service = callback_service(make_service, webhook_timeout=1)  # a lease of 3 s
    url = receiver.plan("/slow", (200, {}, 0.9), 200)
    answer = resize(service, url, seed=60)
    first, = receiver.wait_calls("/slow", 1)
    os.killpg(service.deliverers[0].pid, signal.SIGKILL)  # while the receiver holds its call
    service.deliverers[0].wait()
    service.start_deliverer()  # what `make run`'s supervisor does
    again = receiver.wait_calls("/slow", 2, timeout=15)[1]
    assert again["headers"]["webhook-id"] == first["headers"]["webhook-id"]
    assert verified(again) == verified(first)
    assert callbacks_when_settled(service, answer.json()["task"])[0]["state"] == "delivered"


@pytest.fixture
def own_redis(tmp_path):
    """A private server with its append-only file, which the test may kill and restart."""
    server = EmbeddedRedis(str(tmp_path / "valkey-own"), port=free_port()).start()
    yield server
    server.stop()


def test_pending_deliveries_survive_a_redis_restart(own_redis, scorer, tmp_path, receiver):
    upload_dir = tmp_path / "uploads"
    upload_dir.mkdir()
    service = Service({"REDIS_URL": own_redis.url, "SCORER_URL": scorer.url, "UPLOAD_DIR": str(upload_dir),
                       "SWEEP_INTERVAL": "0.5", "WEBHOOK_SECRET": SECRET, "CALLBACK_ALLOW_PRIVATE": "1",
                       "WEBHOOK_RETRY_SCHEDULE": "4"})
    try:
        service.start_workers(1)
        service.start_deliverer()
        url = receiver.plan("/restart", 503, 204)
        answer = resize(service, url, seed=70)
        first, = receiver.wait_calls("/restart", 1)
        time.sleep(1.5)  # the append-only file is written every second
        own_redis.process.kill()  # kill -9, with the delivery due again later
        own_redis.process.wait()
        time.sleep(1)
        own_redis.start()  # the same port, from its append-only file
        second = receiver.wait_calls("/restart", 2, timeout=20)[1]
        assert second["headers"]["webhook-id"] == first["headers"]["webhook-id"]
        assert callbacks_when_settled(service, answer.json()["task"]) == [
            {"url": url, "state": "delivered", "attempts": 2, "last_status": 204}]
    finally:
        service.stop()
