"""How each answer the scorer may give is sorted: ready, wait, rejected or a fault to retry."""

from __future__ import annotations

import json

import pytest

from src.jobs.scorer_client import FAULT, READY, REJECTED, WAIT, parse


def answer(status_code: int, body) -> tuple:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse(status_code, raw)


@pytest.mark.parametrize("body, result", [
    ({"status": "ready", "result": 0.87}, 0.87),
    ({"status": "ready", "result": "0.87", "errors": []}, 0.87),
    ({"status": "success", "result": 1}, 1.0),
    ({"status": "ready", "result": " 0.5 "}, 0.5),
])
def test_ready_with_a_number_or_numeric_string(body, result):
    parsed = answer(200, body)
    assert parsed.kind == READY and parsed.result == result


@pytest.mark.parametrize("retry_id", ["0b9e7d4c-1f0e-4a43-9d53-3c2f5e1b7a10", 42, 7.5])
def test_wait_keeps_the_retry_id_as_received(retry_id):
    parsed = answer(202, {"status": "wait", "result": None, "retry_id": retry_id})
    assert parsed.kind == WAIT and parsed.retry_id == retry_id and type(parsed.retry_id) is type(retry_id)


@pytest.mark.parametrize("status_code, body", [
    (500, {"status": "error"}),
    (503, b""),
    (429, {"status": "error"}),
    (200, b"<html>oops"),
    (200, b"[1, 2]"),
    (200, {"status": "ready", "result": None}),
    (200, {"status": "ready", "result": "n/a"}),
    (200, {"status": "ready", "result": True}),
    (200, {"status": "ready", "result": "NaN"}),
    (200, {"status": "wait", "result": None}),
    (200, {"status": "wait", "retry_id": ""}),
    (200, {"status": "wait", "retry_id": None}),
    (200, {"status": "pending"}),
    (302, b""),
])
def test_faults_are_retried(status_code, body):
    assert answer(status_code, body).kind == FAULT


@pytest.mark.parametrize("status_code, body", [
    (400, {"status": "error", "errors": ["no face"]}),
    (404, b"not found"),
    (200, {"status": "error", "result": None, "errors": ["bad photo"]}),
])
def test_rejections_fail_the_task(status_code, body):
    parsed = answer(status_code, body)
    assert parsed.kind == REJECTED and parsed.detail
