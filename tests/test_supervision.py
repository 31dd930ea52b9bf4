"""`make run` supervises: real `python -m src.local.launcher` (what `make run` runs) with its own
embedded valkey and simulator under a temporary VAR_DIR, its children killed with SIGKILL.

One launcher serves the whole module (each start costs seconds); the tests run in file order,
and the last one stops it with SIGTERM.
"""

from __future__ import annotations

import base64
import collections
import glob
import io
import os
import re
import signal
import threading

import psutil
import pytest
import redis
import requests
from PIL import Image
from rq import Worker

import launched as make_run
from harness import Client, Receiver, make_photo, wait_for
from launched import alive

NAME = "Ann Lee"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"supervision-test-secret-32-byte!").decode()


class Launched(make_run.Launched):
    """The launcher with two workers and short delays, and a way to follow a scoring task."""

    def __init__(self, tmp_path):
        super().__init__(str(tmp_path), WORKERS="2", WEB_PROCESSES="2", SCORER_RETRY_DELAY="0.2",
                         SCORER_TIMEOUT="20", WEBHOOK_SECRET=WEBHOOK_SECRET,
                         CALLBACK_ALLOW_PRIVATE="1")  # + the callback deliverer

    def score(self, seed: int, timeout: float = 30) -> dict:
        """A new scoring task, followed until it is no longer waiting."""
        answer = self.post(make_photo(seed), name=NAME)
        assert answer.status_code == 202, answer.text
        return self.wait_done(answer.json()["task"], timeout=timeout).json()


def replaced(launched: Launched, command_part: str, old_pid: int) -> bool:
    pids = [child.pid for child in launched.children(command_part)]
    return bool(pids) and old_pid not in pids


def scheduler_alive(client: redis.Redis) -> bool:
    """RQ's scheduler lock is held by a scheduler process that runs."""
    holder = client.get("rq:scheduler-lock:score")
    pid = holder and client.hget(b"rq:scheduler:" + holder, "pid")
    return bool(pid) and alive(int(pid))


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    launched = Launched(tmp_path_factory.mktemp("launcher"))
    try:
        launched.wait_ready()
        yield launched
    finally:
        if launched.process.poll() is None:
            launched.process.send_signal(signal.SIGTERM)
            launched.process.wait(30)
        print(launched.log())  # shown by pytest when a test failed


def web_pids(launched: Launched) -> set[int]:
    return {web.pid for web in launched.children("wsgi.py")}


def answering(launched: Launched, tries: int = 200) -> set[int]:
    """The web processes seen answering, one new connection at a time, until each of them
    has (or `tries` connections were made)."""
    pids, seen = web_pids(launched), set()
    for _ in range(tries):
        seen.add(launched.served_by())
        if seen >= pids:
            break
    return seen


def test_two_web_processes_share_the_port_and_both_answer(launched):
    pids = web_pids(launched)
    assert len(pids) == 2
    assert answering(launched) == pids


def test_a_killed_web_process_is_restarted_alone_while_the_other_serves(launched):
    killed, other = sorted(web_pids(launched))
    workers = {worker.pid for worker in launched.children("src.runners.worker")}
    [victim] = [web for web in launched.children("wsgi.py") if web.pid == killed]
    victim.kill()

    for _ in range(20):  # meanwhile every connection is answered, by the other one
        assert launched.served_by() == other
        if replaced(launched, "wsgi.py", killed) and len(web_pids(launched)) == 2:
            break
    wait_for(lambda: len(web_pids(launched)) == 2 and killed not in web_pids(launched), timeout=15)
    assert other in web_pids(launched)  # not restarted with it
    assert answering(launched) == web_pids(launched)
    assert launched.score(1)["status"] == "ready"
    assert {worker.pid for worker in launched.children("src.runners.worker")} == workers
    assert f"(pid {killed}) was killed by SIGKILL" in launched.log()


def test_metrics_count_the_requests_answered_by_every_web_process(launched):
    def heads(text: str) -> float:
        match = re.search(r'^photo_tasks_http_requests_total\{method="HEAD",status="200"\} ([0-9.e+]+)$', text, re.M)
        return float(match.group(1)) if match else 0.0

    scrape = lambda: heads(requests.get(launched.url + "metrics", timeout=5).text)  # noqa: E731
    before = scrape()
    served = collections.Counter(launched.served_by(method="HEAD") for _ in range(40))
    assert len(served) == 2  # both processes answered some of them
    # Each process writes its counts at least every second (the scraped one, first thing).
    wait_for(lambda: scrape() >= before + 40, timeout=10)
    assert scrape() == before + 40


def test_a_killed_worker_is_replaced_and_leaves_nothing_running(launched):
    launched.scorer("_control", faults=["slow"], slow_seconds=30)  # keeps a job running
    calls = len(launched.scorer("_calls").json())
    assert launched.post(make_photo(2), name=NAME).status_code == 202
    wait_for(lambda: len(launched.scorer("_calls").json()) > calls)  # the job is mid-call
    [busy] = [worker for worker in Worker.all(connection=launched.redis) if worker.get_state() == "busy"]
    main = psutil.Process(busy.pid)
    started = [process.pid for process in main.children(recursive=True)]  # horse, scheduler
    main.kill()

    wait_for(lambda: not any(alive(pid) for pid in started), timeout=10)
    wait_for(lambda: len(launched.children("src.runners.worker")) == 2, timeout=15)
    new_pids = {worker.pid for worker in launched.children("src.runners.worker")} - {busy.pid}
    wait_for(lambda: new_pids & {worker.pid for worker in Worker.all(connection=launched.redis)})
    wait_for(lambda: scheduler_alive(launched.redis), timeout=10)  # whoever held the lock
    assert launched.score(3)["status"] == "ready"


def test_an_upload_cut_short_by_a_killed_web_server_leaves_no_file(launched):
    spools = os.path.join(launched.upload_dir, "tmp")
    spooled = lambda: glob.glob(os.path.join(spools, "*", "upload-*"))  # noqa: E731
    for attempt in range(5):  # until we catch a web process with an upload spooled
        webs = launched.children("wsgi.py")
        sender = threading.Thread(target=post_quietly, args=(launched, big_upload(attempt)), daemon=True)
        sender.start()
        wait_for(lambda: spooled() or not sender.is_alive(), timeout=30, step=0.002)
        for web in webs:
            web.suspend()  # so the spool cannot be finished and removed while we look
        if spooled():
            break
        for web in webs:
            web.resume()
    else:
        pytest.fail("never caught an upload being spooled")
    # The spool's folder is named <host>-<pid>-<random>: the process receiving it.
    [owner] = [web for web in webs if f"-{web.pid}-" in os.path.basename(os.path.dirname(spooled()[0]))]
    owner.kill()
    for web in webs:
        if web.pid != owner.pid:
            web.resume()

    wait_for(lambda: replaced(launched, "wsgi.py", owner.pid) and len(web_pids(launched)) == 2, timeout=15)
    wait_for(lambda: answering(launched, tries=50) == web_pids(launched), timeout=15)  # the new one is serving
    left = [path for path in glob.glob(os.path.join(spools, "**"), recursive=True)
            if os.path.isfile(path) and not path.endswith(".lock")]
    assert left == []
    assert len(glob.glob(os.path.join(spools, "*.lock"))) == 2  # the two web processes' own


def big_upload(seed: int) -> bytes:
    """A 15 MB BMP: the web process takes a while over it once it is spooled."""
    buffer = io.BytesIO()
    Image.new("RGB", (2500, 2000), (seed, 90, 120)).save(buffer, "BMP")
    return buffer.getvalue()


def post_quietly(client: Client, photo: bytes) -> None:
    try:
        client.post(photo, filename="big.bmp", content_type="image/bmp", name=NAME)
    except requests.RequestException:
        pass  # the web process was killed under it


def test_a_killed_valkey_is_back_on_the_same_port_with_its_data(launched):
    ready = launched.score(4)
    assert ready["status"] == "ready"
    valkey = launched.child("valkey-server")
    url = launched.redis_url()
    valkey.kill()

    wait_for(lambda: replaced(launched, "valkey-server", valkey.pid), timeout=15)
    wait_for(lambda: launched.get(ready["task"]).status_code == 200, timeout=15)
    assert launched.get(ready["task"]).json() == ready
    assert launched.redis_url() == url
    assert launched.score(5, timeout=40)["status"] == "ready"


def test_a_killed_deliverer_is_replaced_and_callbacks_still_come(launched):
    deliverer = launched.child("src.runners.deliverer")
    deliverer.kill()
    wait_for(lambda: replaced(launched, "src.runners.deliverer", deliverer.pid), timeout=15)
    receiver = Receiver()
    try:
        url = receiver.plan("/hook", 204)
        answer = launched.post(make_photo(6), width=16, callback_url=url)
        assert answer.status_code == 202, answer.text
        call, = receiver.wait_calls("/hook", 1, timeout=15)
        assert call["headers"]["webhook-id"].startswith("msg_")
    finally:
        receiver.stop()
    assert f"callback deliverer (pid {deliverer.pid}) was killed by SIGKILL" in launched.log()


def test_sigterm_stops_every_child_promptly(launched):
    started = [process.pid for process in psutil.Process(launched.process.pid).children(recursive=True)]
    assert len(started) >= 7  # valkey, simulator, two workers (and a scheduler), deliverer, two web processes

    launched.process.send_signal(signal.SIGTERM)
    assert launched.process.wait(timeout=10) == 0
    assert [pid for pid in started if alive(pid)] == []
    assert not os.path.exists(os.path.join(launched.var_dir, "run", "redis.url"))
