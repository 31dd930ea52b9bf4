"""`make dashboard`: rq-dashboard from its own venv, against the service's Redis, showing the
service's queues; and how it finds that Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import requests

from harness import ROOT, make_photo, wait_for
from launched import Launched
from src.local.dashboard import DashboardError, credentials, redis_url
from src.local.embedded_redis import free_port
from src.local.processes import spawn
from src.settings import Settings


@pytest.fixture(scope="module")
def dashboard_venv():
    subprocess.run(["make", "-s", ".venv-dashboard/.installed"], cwd=ROOT, check=True, timeout=600)


@pytest.fixture
def dashboard(dashboard_venv, redis_server):
    """`make dashboard` on a free port for the tests' Redis, with basic auth; its base URL."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_server.url, "DASHBOARD_PORT": str(port),
           "DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "pw"}
    process = spawn(["make", "-s", "dashboard"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_listening(url, process)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=10)[0].decode()
        assert f"rq-dashboard on http://127.0.0.1:{port}/" in output and "basic auth on" in output


def wait_listening(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, "make dashboard exited"
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "make dashboard did not listen"
            time.sleep(0.2)


def test_the_dashboard_shows_the_score_and_resize_queues(make_service, dashboard):
    service = make_service(workers=0)  # so the jobs stay queued
    assert service.post(make_photo(1), name="Ann Lee").status_code == 202
    assert service.post(make_photo(2), width=10).status_code == 202
    assert requests.get(f"{dashboard}/0/data/queues.json", timeout=5).status_code == 401

    def described(queue: str) -> list[str]:
        jobs = requests.get(f"{dashboard}/0/data/jobs/{queue}/queued/8/asc/1.json", auth=("ops", "pw"), timeout=5)
        return [job["description"] for job in jobs.json()["jobs"]]

    wait_for(lambda: "score task 1" in described("score"))  # put there by the dispatcher
    assert described("resize") == ["resize task 2"]
    answer = requests.get(f"{dashboard}/0/data/queues.json", auth=("ops", "pw"), timeout=5)
    assert answer.status_code == 200, answer.text
    assert {queue["name"] for queue in answer.json()["queues"]} >= {"score", "resize"}


def test_the_redis_is_redis_url_or_the_one_make_run_wrote_down(tmp_path):
    given = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:7000/0", "VAR_DIR": str(tmp_path)})
    assert redis_url(given) == "redis://127.0.0.1:7000/0"
    unset = Settings.from_env({"VAR_DIR": str(tmp_path)})
    with pytest.raises(DashboardError, match="Start `make run` first, or set REDIS_URL"):
        redis_url(unset)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "redis.url").write_text("redis://127.0.0.1:7001/0\n")
    assert redis_url(unset) == "redis://127.0.0.1:7001/0"


def test_the_dashboard_finds_the_embedded_redis_of_a_make_run_with_its_var_dir(dashboard_venv, tmp_path):
    """`make run` writes its embedded Redis's URL under VAR_DIR; `make dashboard` with the
    same VAR_DIR (and no REDIS_URL) shows that Redis, jobs named after their tasks."""
    launched = Launched(str(tmp_path))
    dashboard = None
    try:
        launched.wait_ready()
        task = launched.post(make_photo(3), name="Ann Lee").json()["task"]
        port = free_port()
        env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
        env.update(VAR_DIR=launched.var_dir, DASHBOARD_PORT=str(port))
        dashboard = spawn(["make", "-s", "dashboard"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        wait_listening(url, dashboard)

        def described() -> list[str]:
            jobs = requests.get(f"{url}/0/data/jobs/score/finished/8/asc/1.json", timeout=5)
            return [job["description"] for job in jobs.json()["jobs"]]

        wait_for(lambda: f"score task {task}" in described(), timeout=20)
    finally:
        if dashboard is not None:
            if dashboard.poll() is None:
                os.killpg(dashboard.pid, signal.SIGTERM)
            dashboard.communicate(timeout=10)
        launched.process.send_signal(signal.SIGTERM)
        launched.process.wait(30)


def test_basic_auth_needs_both_names():
    assert credentials({}) == {}
    assert credentials({"DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "pw"}) == \
        {"RQ_DASHBOARD_USERNAME": "ops", "RQ_DASHBOARD_PASSWORD": "pw"}
    with pytest.raises(DashboardError, match="both"):
        credentials({"DASHBOARD_USERNAME": "ops"})


def test_without_a_redis_it_says_so_and_stops(dashboard_venv, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    done = subprocess.run(["make", "-s", "dashboard"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode != 0
    assert "does not answer" in done.stderr and "Traceback" not in done.stderr
