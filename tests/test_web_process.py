"""`python wsgi.py` as a process manager or a container engine runs it: SIGTERM stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from harness import ROOT
from src.local.embedded_redis import free_port


def _answering(url: str, process: subprocess.Popen) -> bool:
    """Whether the server answers HTTP at all, waiting for it to start (bounded)."""
    for _ in range(100):
        if process.poll() is not None:
            return False
        try:
            requests.get(url, params={"task_id": 1}, timeout=2)
            return True
        except requests.ConnectionError:
            time.sleep(0.1)
    return False


def test_sigterm_stops_the_web_server_with_exit_code_0(redis_server, tmp_path):
    port = free_port()
    env = {**os.environ, "PORT": str(port), "REDIS_URL": redis_server.url,
           "UPLOAD_DIR": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "wsgi.py"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _answering(f"http://127.0.0.1:{port}/", process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_every_answer_is_logged_by_the_time_the_server_has_stopped(redis_server, tmp_path):
    """Access lines are written in batches: the first within a moment, and those still
    gathered when SIGTERM arrives before the process exits."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "REDIS_URL": redis_server.url, "UPLOAD_DIR": str(tmp_path)}
    log_path = tmp_path / "stderr"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "wsgi.py"], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=log)
    try:
        assert _answering(f"http://127.0.0.1:{port}/", process)
        first = requests.get(f"http://127.0.0.1:{port}/", params={"task_id": 1}, timeout=5)
        deadline = time.monotonic() + 5
        while first.headers["X-Request-Id"] not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.headers["X-Request-Id"] in log_path.read_text()
        with requests.Session() as session:
            ids = [session.get(f"http://127.0.0.1:{port}/", params={"task_id": n}, timeout=5).headers["X-Request-Id"]
                   for n in range(1, 51)]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        lines = log_path.read_text().splitlines()
        assert all(sum(request_id in line for line in lines) == 1 for request_id in ids)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _healthcheck(port: int) -> int:
    env = {**os.environ, "PORT": str(port)}
    return subprocess.run([sys.executable, "-m", "src.web.healthcheck"], cwd=ROOT, env=env,
                          capture_output=True, timeout=30).returncode


def test_the_container_health_check_passes_while_the_web_answers(service):
    assert _healthcheck(service.server.effective_port) == 0


def test_the_container_health_check_fails_when_nothing_answers():
    assert _healthcheck(free_port()) == 1
