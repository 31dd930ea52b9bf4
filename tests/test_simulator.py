"""Tests of the scorer simulator (the test peer for the remote scorer), over real HTTP."""

import hashlib
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from src.local.simulator import FAULTS, create_simulator, expected_score, serve

PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    server, url = serve(port=0)
    yield url
    server.shutdown()


@pytest.fixture
def url(server):
    requests.post(server + "_reset", timeout=5).raise_for_status()
    return server


def control(url, **settings):
    response = requests.post(url.replace("/api/", "/_control"), json=settings, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def start(url, name="Ann Lee", photo=PHOTO, filename="face.png", content_type="image/png"):
    files = {"photo": (filename, photo, content_type)} if photo is not None else None
    return requests.post(url, data={"name": name} if name is not None else {}, files=files, timeout=5)


def poll(url, retry_id):
    # multipart, as the service sends it, with only retry_id
    return requests.post(url, files={"retry_id": (None, str(retry_id))}, timeout=5)


def test_health(url):
    assert requests.get(url + "_health", timeout=5).json() == {"ok": True}


def test_ready_at_once(url):
    response = start(url)
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "result": expected_score("Ann Lee", PHOTO), "errors": []}


def test_wait_rounds_then_ready(url):
    control(url, wait_rounds=3)
    first = start(url)
    assert first.status_code == 202
    body = first.json()
    assert body["status"] == "wait" and body["result"] is None and body["errors"] == []
    retry_id = body["retry_id"]
    uuid.UUID(retry_id)
    for _ in range(2):
        again = poll(url, retry_id)
        assert again.status_code == 202
        assert again.json()["retry_id"] == retry_id
    done = poll(url, retry_id)
    assert done.status_code == 200
    assert done.json()["result"] == expected_score("Ann Lee", PHOTO)
    assert poll(url, retry_id).json()["status"] == "ready"  # a finished task stays pollable


def test_int_retry_id(url):
    control(url, wait_rounds=1, retry_id_as="int")
    retry_id = start(url).json()["retry_id"]
    assert isinstance(retry_id, int)
    assert poll(url, retry_id).json()["status"] == "ready"


def test_string_result_and_success_word(url):
    control(url, result_as="string", status_word="success")
    body = start(url).json()
    assert body["status"] == "success"
    assert body["result"] == f"{expected_score('Ann Lee', PHOTO):.4f}"


@pytest.mark.parametrize(
    "fault, status, body",
    [
        ("500", 500, "error"),
        ("503", 503, "error"),
        ("429", 429, "error"),
        ("garbage", 200, None),
        ("bad_result", 200, "ready"),
        ("reject", 400, "error"),
        ("error_status", 200, "error"),
        ("drop", 502, None),
    ],
)
def test_fault_is_consumed_once(url, fault, status, body):
    control(url, faults=[fault])
    response = start(url)
    assert response.status_code == status
    if body is None:
        with pytest.raises(ValueError):
            response.json()
    else:
        assert response.json()["status"] == body
    assert start(url).json()["status"] == "ready"


def test_fault_bodies(url):
    control(url, faults=["bad_result", "reject", "error_status"])
    assert start(url).json()["result"] == "not-a-number"
    assert start(url).json() == {"status": "error", "result": None, "errors": ["rejected"]}
    assert start(url).json()["errors"] == ["bad photo"]


def test_fault_does_not_advance_wait_rounds(url):
    control(url, wait_rounds=2)
    retry_id = start(url).json()["retry_id"]
    control(url, faults=["503"])
    assert poll(url, retry_id).status_code == 503
    assert poll(url, retry_id).status_code == 202
    assert poll(url, retry_id).status_code == 200


def test_always_fault(url):
    control(url, always="503")
    assert [start(url).status_code for _ in range(3)] == [503, 503, 503]
    control(url, always=None)
    assert start(url).status_code == 200


def test_slow_requests_are_served_in_parallel(url):
    control(url, always="slow", slow_seconds=0.2)
    began = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: start(url), range(4)))
    elapsed = time.monotonic() - began
    assert [a.json()["status"] for a in answers] == ["ready"] * 4
    assert 0.2 <= elapsed < 0.6


def test_calls_are_recorded(url):
    control(url, wait_rounds=1, faults=["500"])
    start(url)
    retry_id = start(url, filename="me.jpg", content_type="image/jpeg").json()["retry_id"]
    poll(url, retry_id)
    calls = requests.get(url + "_calls", timeout=5).json()
    assert len(calls) == 3  # the fault is recorded too
    first, second, third = calls
    assert first["path"] == "/api/" and abs(first["time"] - time.time()) < 5
    assert second["fields"] == {"name": "Ann Lee"}
    assert second["files"] == {
        "photo": {
            "filename": "me.jpg",
            "content_type": "image/jpeg",
            "size": len(PHOTO),
            "sha256": hashlib.sha256(PHOTO).hexdigest(),
        }
    }
    assert third["fields"] == {"retry_id": retry_id} and third["files"] == {}


def test_score_is_deterministic(url):
    score = expected_score("Ann Lee", PHOTO)
    assert 0 <= score <= 1 and round(score, 4) == score
    assert expected_score("  ann LEE ", PHOTO) == score
    assert expected_score("Ann Lee", PHOTO + b"x") != score
    assert start(url, name=" ANN lee").json()["result"] == score
    assert start(url).json()["result"] == score


@pytest.mark.parametrize(
    "kwargs, status",
    [({"name": None}, 400), ({"name": "  "}, 400), ({"photo": None}, 400), ({"photo": b""}, 400)],
)
def test_first_call_needs_name_and_photo(url, kwargs, status):
    response = start(url, **kwargs)
    assert response.status_code == status
    assert response.json()["status"] == "error"


def test_unknown_retry_id_and_wrong_method(url):
    assert poll(url, "nope").status_code == 404
    assert requests.get(url, timeout=5).status_code == 405
    assert requests.post(url.replace("/api/", "/"), data={"name": "x"}, timeout=5).status_code == 400


def test_control_validates_and_reset_restores(url):
    base = url.replace("/api/", "/")
    assert requests.post(base + "_control", json={"bogus": 1}, timeout=5).status_code == 400
    assert requests.post(base + "_control", json={"faults": ["nope"]}, timeout=5).status_code == 400
    assert requests.post(base + "_control", data="[]", timeout=5).status_code == 400
    assert control(url, faults=["500", "slow"])["faults"] == ["500", "slow"]
    start(url)
    settings = requests.post(base + "_reset", timeout=5).json()
    assert settings["faults"] == [] and settings["wait_rounds"] == 0
    assert requests.get(base + "_calls", timeout=5).json() == []


def test_in_process_api():
    simulator = create_simulator(wait_rounds=2)
    assert simulator.configure(status_word="success")["wait_rounds"] == 2
    with pytest.raises(ValueError):
        simulator.configure(wait_rounds=-1)
    assert set(FAULTS) >= {"slow", "drop", "garbage"}
    assert simulator.calls() == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_prints_url_and_exits_cleanly_on_signal(signum):
    process = subprocess.Popen(
        [sys.executable, "-m", "src.local.simulator", "--port", "0", "--wait-rounds", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("scorer simulator listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert url.endswith("/api/")
        assert start(url).status_code == 202
        process.send_signal(signum)
        assert process.wait(timeout=5) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        process.kill()
