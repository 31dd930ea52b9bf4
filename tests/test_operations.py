"""For operators: /healthz, /readyz and /metrics, over real HTTP against a real service with
real workers, with and without API keys, and with Redis gone."""

from __future__ import annotations

import re
import socket

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harness import Service, bearer, make_photo, wait_for
from src.local.embedded_redis import free_port

NAME = "Ann Lee"


def scrape(service) -> dict[tuple, float]:
    """GET /metrics: {(sample name, sorted label pairs): value}, parsed as Prometheus does."""
    answer = service.fetch("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def finish(service, answer: requests.Response) -> dict:
    assert answer.status_code == 202, answer.text
    done = service.wait_done(answer.json()["task"])
    assert done.status_code == 200, done.text
    return done.json()


# --- health -------------------------------------------------------------------------------

def without_redis(tmp_path, **settings) -> Service:
    """The web app pointed at a port where no Redis listens."""
    return Service({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "UPLOAD_DIR": str(tmp_path), **settings})


def test_healthz_needs_no_key_and_no_redis(tmp_path):
    service = without_redis(tmp_path, API_KEYS="alice:s3cret")
    try:
        answer = service.fetch("/healthz")
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.json() == {"status": "ok"}
        assert service.fetch("/healthz", method="HEAD").status_code == 200
        assert service.fetch("/healthz", method="POST").status_code == 405
    finally:
        service.stop()


def test_readyz_names_redis_workers_and_queues(make_service):
    service = make_service(workers=1, api_keys="alice:s3cret")
    service.wait_for_workers(1)
    answer = service.fetch("/readyz")  # no key needed
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready"
    assert body["redis"]["status"] == "ok" and body["redis"]["ping_ms"] >= 0
    assert body["workers"]["alive"] == 1 and len(body["workers"]["names"]) == 1
    assert body["queues"]["resize"] == 0  # `score` also carries the sweeps, which come and go
    assert set(body["queues"]) == {"score", "resize"}


def test_readyz_is_503_without_a_worker_and_counts_waiting_jobs(make_service):
    service = make_service(workers=0)
    assert service.post(make_photo(1), name=NAME).status_code == 202
    # The dispatcher puts the new task's first call on the `score` queue within milliseconds;
    # the sweeps it enqueues wait there too, with no worker to run them.
    wait_for(lambda: service.fetch("/readyz").json()["queues"]["score"] >= 1)
    answer = service.fetch("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable" and "worker" in body["reason"]
    assert body["workers"]["alive"] == 0
    assert body["queues"]["resize"] == 0


def test_queue_depths_count_the_tasks_waiting_their_turn(make_service):
    """Fair turns keep RQ's own queue at about one job per two workers; the depth an operator
    sees in /readyz and /metrics is every run waiting, the users' backlogs included."""
    service = make_service(workers=0)
    for seed in range(5):
        assert service.post(make_photo(40 + seed), width=50).status_code == 202
    wait_for(lambda: service.fetch("/readyz").json()["queues"]["resize"] == 5)
    assert value(scrape(service), "photo_tasks_queue_depth", queue="resize") == 5


def test_readyz_is_503_when_redis_is_gone(tmp_path):
    service = without_redis(tmp_path)
    try:
        answer = service.fetch("/readyz")
        assert answer.status_code == 503
        body = answer.json()
        assert body["redis"]["status"] == "unreachable" and "Redis" in body["reason"]
        assert "Traceback" not in answer.text
        metrics = service.fetch("/metrics")  # still answers, and says Redis is down
        assert metrics.status_code == 200 and "photo_tasks_redis_up 0.0" in metrics.text
    finally:
        service.stop()


# --- metrics ------------------------------------------------------------------------------

def test_metrics_count_a_scoring_task_from_the_worker(make_service, scorer):
    service = make_service(workers=1)
    scorer.configure(wait_rounds=1)
    before = scrape(service)
    assert finish(service, service.post(make_photo(2), name=NAME))["status"] == "ready"
    after = scrape(service)
    assert value(after, "photo_tasks_tasks_created_total", kind="score") == \
        value(before, "photo_tasks_tasks_created_total", kind="score") + 1
    assert value(after, "photo_tasks_tasks_finished_total", kind="score", outcome="ready") == \
        value(before, "photo_tasks_tasks_finished_total", kind="score", outcome="ready") + 1
    # one `wait` and one `ready` answer, each timed
    for outcome in ("wait", "ready"):
        assert value(after, "photo_tasks_scorer_call_duration_seconds_count", outcome=outcome) == \
            value(before, "photo_tasks_scorer_call_duration_seconds_count", outcome=outcome) + 1
    assert value(after, "photo_tasks_scorer_call_duration_seconds_bucket", outcome="ready", le="+Inf") >= 1
    assert value(after, "photo_tasks_http_requests_total", method="POST", status="202") == \
        value(before, "photo_tasks_http_requests_total", method="POST", status="202") + 1


def test_metrics_count_a_resize_and_a_failed_task(make_service, scorer):
    service = make_service(workers=1)
    scorer.configure(faults=["reject"])
    before = scrape(service)
    assert finish(service, service.post(make_photo(3), width=20))["status"] == "ready"
    assert finish(service, service.post(make_photo(4), name=NAME))["status"] == "failed"
    after = scrape(service)
    assert value(after, "photo_tasks_tasks_finished_total", kind="resize", outcome="ready") == 1
    assert value(after, "photo_tasks_tasks_finished_total", kind="score", outcome="scorer_rejected") == 1
    assert value(after, "photo_tasks_tasks_created_total", kind="resize") == 1
    assert value(after, "photo_tasks_resize_duration_seconds_count") == \
        value(before, "photo_tasks_resize_duration_seconds_count") + 1
    assert value(after, "photo_tasks_resize_duration_seconds_sum") > 0
    assert value(after, "photo_tasks_scorer_call_duration_seconds_count", outcome="rejected") == 1


def test_metrics_count_a_rejected_upload_and_no_task(make_service):
    service = make_service(workers=0)
    before = scrape(service)
    assert service.post(b"just some text", filename="notes.txt", content_type="text/plain",
                        name=NAME).status_code == 415
    after = scrape(service)
    assert value(after, "photo_tasks_http_requests_total", method="POST", status="415") == \
        value(before, "photo_tasks_http_requests_total", method="POST", status="415") + 1
    assert value(after, "photo_tasks_http_request_duration_seconds_count", method="POST") == \
        value(before, "photo_tasks_http_request_duration_seconds_count", method="POST") + 1
    assert value(after, "photo_tasks_tasks_created_total", kind="score") == \
        value(before, "photo_tasks_tasks_created_total", kind="score")


def test_metrics_count_the_answers_the_server_gives_itself(service):
    """A body announced over MAX_UPLOAD_BYTES is refused by waitress before the app sees it;
    it is still an answer the operator should see counted."""
    before = scrape(service)
    with socket.create_connection(("127.0.0.1", service.server.effective_port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                     % (service.settings.max_upload_bytes + 1))
        assert sock.recv(100).startswith(b"HTTP/1.1 413 ")
    after = scrape(service)
    assert value(after, "photo_tasks_http_requests_total", method="POST", status="413") == \
        value(before, "photo_tasks_http_requests_total", method="POST", status="413") + 1


def test_metrics_show_queues_and_workers_without_a_key_and_without_user_data(make_service):
    service = make_service(workers=1, api_keys="alice:s3cret")
    service.wait_for_workers(1)
    key = bearer("s3cret")
    task = service.post(make_photo(5), name="Zelda Quux", headers=key).json()["task"]
    service.wait_done(task, headers=key)
    service.fetch("/?task_id=123456789", method="GET")  # a 401: its path must not show either
    samples = scrape(service)
    assert value(samples, "photo_tasks_workers_alive") == 1
    assert value(samples, "photo_tasks_queue_depth", queue="score") == 0
    assert value(samples, "photo_tasks_queue_depth", queue="resize") == 0
    assert value(samples, "photo_tasks_redis_up") == 1
    text = service.fetch("/metrics").text
    for secret in ("Zelda", "alice", "s3cret", "123456789", "127.0.0.1"):
        assert secret not in text
    assert re.search(r'^photo_tasks_http_requests_total\{method="GET",status="401"\} 1\.0$', text, re.M)


def test_a_made_up_method_is_counted_as_other(service):
    requests.request("BREW", service.url, timeout=5)
    assert value(scrape(service), "photo_tasks_http_requests_total", method="other", status="405") == 1


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_operator_paths_only_read(service, path):
    answer = service.fetch(path, method="DELETE")
    assert answer.status_code == 405 and answer.headers["Allow"] == "GET, HEAD"
