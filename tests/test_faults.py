"""What survives what: real processes killed with real signals while tasks wait.

Each test kills a part of the running service (`kill -9`) and asserts what a user sees:
the task still ends `ready` (or with the documented failure), in the contract's time, and
nothing is left behind. SWEEP_INTERVAL is 0.5 s here (see conftest), so a lost job is found
within a few seconds instead of the default ~25 s.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import signal
import time

import psutil
import pytest
import redis
import requests
from rq import Worker

from harness import (
    Service,
    assert_failed,
    assert_ready,
    files_under,
    leftovers,
    make_photo,
    noisy_photo,
    start_task,
    wait_until,
)
from src.local.embedded_redis import EmbeddedRedis, free_port


def talking_to(service, port: int) -> psutil.Process | None:
    """The worker process that has a connection open to `port` (the simulator)."""
    for popen in service.workers[1:]:  # [0] is the dispatcher
        try:
            process = psutil.Process(popen.pid)
            if any(c.raddr and c.raddr.port == port for c in process.net_connections("tcp")):
                return process
        except psutil.NoSuchProcess:
            continue
    return None


def scorer_port(scorer) -> int:
    return int(scorer.url.split(":")[2].split("/")[0])


def kill_worker_mid_call(service, scorer) -> None:
    """Wait until a worker is inside a scoring call, then kill -9 its whole process group."""
    process = wait_until(lambda: talking_to(service, scorer_port(scorer)), timeout=15, interval=0.02)
    assert process, "no worker was seen calling the scorer"
    os.killpg(process.pid, signal.SIGKILL)


def test_a_worker_killed_mid_call_has_its_job_run_again(make_service, scorer):
    service = make_service(workers=2)
    scorer.configure(faults=["slow"], slow_seconds=3)
    photo = make_photo(200)
    task = start_task(service, photo)
    kill_worker_mid_call(service, scorer)
    began = time.monotonic()
    assert_ready(service, task, photo, timeout=60)
    assert time.monotonic() - began < 60
    assert len([c for c in scorer.calls() if "name" in c["fields"]]) == 2  # the lost call, again


def test_a_task_whose_job_is_lost_three_times_fails(make_service, scorer):
    service = make_service(workers=1)
    scorer.configure(always="slow", slow_seconds=5)
    task = start_task(service, make_photo(201))
    for _ in range(3):
        kill_worker_mid_call(service, scorer)
        service.start_workers(1)  # what `make run`'s supervisor does
    body = assert_failed(service, task, "internal_error", timeout=30)
    assert "lost 3 times" in body["error"]["message"]


def resize_and_kill_its_worker(service) -> int:
    """Post a resize big enough to take a while, kill -9 the worker running it (resizes run in
    the worker process: no work horse); its task."""
    worker = psutil.Process(service.workers[1].pid)
    photo = noisy_photo("PNG", size=(3000, 2000), seed=7)
    answer = service.post(photo, filename="big.png", content_type="image/png", width=300)
    assert answer.status_code == 202, answer.text
    task = answer.json()["task"]
    running = wait_until(lambda: 5 <= service.get(task).json().get("progress", 0) < 100, timeout=10, interval=0.005)
    assert running, "the resize was not seen running"
    worker.kill()
    return task


def test_a_worker_killed_mid_resize_has_its_job_run_again_once(make_service, redis_client):
    service = make_service(workers=1)
    task = resize_and_kill_its_worker(service)
    service.start_workers(1)  # what `make run`'s supervisor does
    done = service.wait_done(task, timeout=30)
    assert done.json()["status"] == "ready", done.text
    assert done.json()["result"]["width"] == 300
    assert redis_client.hget(f"pt:task:{task}", "losses") == b"1"
    # the killed run's partial file is gone: only the photo and the one result remain
    results = [p for p in files_under(service.settings.upload_dir) if p.startswith("results/")]
    assert len(results) == 1


def test_the_deadline_holds_even_when_no_job_will_run(make_service, scorer):
    service = make_service(workers=1, scorer_deadline=2)
    service.wait_for_workers(1)  # a worker that starts late on a busy machine would meet the deadline first
    scorer.configure(wait_rounds=100)
    task = start_task(service, make_photo(202))
    assert wait_until(lambda: len(scorer.calls()) >= 1, timeout=10)
    service.stop_workers()  # no worker, no dispatcher: nothing will ever run this task again
    body = assert_failed(service, task, "scorer_timeout", timeout=10)
    assert "2 s" in body["error"]["message"]


def test_orphan_files_are_swept(make_service, redis_client):
    service = make_service(workers=1, orphan_grace=0)
    upload_dir = service.settings.upload_dir
    task = start_task(service, make_photo(203))
    stray = {"photos/ab/" + "ab" * 32, "results/" + "x" * 32 + ".jpg"}
    for path in stray:
        os.makedirs(os.path.dirname(os.path.join(upload_dir, path)), exist_ok=True)
        open(os.path.join(upload_dir, path), "wb").close()
    assert wait_until(lambda: not stray & files_under(upload_dir), timeout=10)
    assert service.wait_done(task).json()["status"] == "ready"
    assert any(p.startswith("photos/") for p in files_under(upload_dir))  # a named photo stays


@pytest.fixture
def own_redis(tmp_path):
    """A private server with its append-only file, which the test may kill and restart."""
    server = EmbeddedRedis(str(tmp_path / "valkey-own"), port=free_port()).start()
    yield server
    server.stop()


def on_own_redis(own_redis, scorer, tmp_path, **env: str) -> tuple[Service, pathlib.Path]:
    """The service on `own_redis` (its workers not yet started), and its upload folder."""
    upload_dir = tmp_path / "uploads"
    upload_dir.mkdir()
    settings = {"REDIS_URL": own_redis.url, "SCORER_URL": scorer.url, "UPLOAD_DIR": str(upload_dir), **env}
    return Service(settings), upload_dir


def test_waiting_tasks_finish_after_redis_is_killed_and_restarted(own_redis, scorer, tmp_path):
    service, upload_dir = on_own_redis(own_redis, scorer, tmp_path,
                                       SCORER_RETRY_DELAY="0.5", SCORER_TIMEOUT="2", SWEEP_INTERVAL="0.5")
    try:
        service.start_workers(2)
        scorer.configure(wait_rounds=6)
        photos = [make_photo(300 + i) for i in range(10)]
        tasks = [start_task(service, photo) for photo in photos]
        assert wait_until(lambda: len(scorer.calls()) >= 15, timeout=15)

        own_redis.process.kill()  # kill -9: the server keeps only its append-only file
        own_redis.process.wait()
        answer = service.get(tasks[0])
        assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text
        time.sleep(3)
        own_redis.start()  # the same port, from its append-only file

        for task, photo in zip(tasks, photos):
            assert_ready(service, task, photo, timeout=60)
    finally:
        service.stop()


def test_a_run_that_loses_redis_to_restarts_is_not_counted_as_lost(own_redis, scorer, tmp_path):
    """Redis killed and restarted from its append-only file while a scoring call is in flight,
    three times over: each time the run cannot record its answer and must run again. Its worker
    did not die, so these are not the contract's three losses (internal_error): the task ends
    as it would have."""
    service, upload_dir = on_own_redis(own_redis, scorer, tmp_path,
                                       SCORER_RETRY_DELAY="0.5", SCORER_TIMEOUT="5", SWEEP_INTERVAL="0.5")
    try:
        service.start_workers(1)
        scorer.configure(always="slow", slow_seconds=2)
        photo = make_photo(320)
        task = start_task(service, photo)
        for _ in range(3):
            calls = len(scorer.calls())
            assert wait_until(lambda: len(scorer.calls()) > calls, timeout=30), "the task was not run again"
            own_redis.process.kill()  # kill -9 mid-call
            own_redis.process.wait()
            time.sleep(3)  # the call ends while Redis is away: its answer cannot be recorded
            own_redis.start()  # the same port, from its append-only file
        scorer.configure(always=None)
        assert_ready(service, task, photo, timeout=60)
    finally:
        service.stop()


def test_a_finished_task_expires_on_time_after_redis_is_killed_and_restarted(own_redis, scorer, tmp_path):
    """The end of a task's time to live is kept in Redis (`pt:expiring`, in its append-only
    file) and acted on by the sweep, so it comes on time after a restart too."""
    service, upload_dir = on_own_redis(own_redis, scorer, tmp_path, TASK_TTL="4", SWEEP_INTERVAL="0.5")
    try:
        service.start_workers(1)
        photo = make_photo(310)
        task = start_task(service, photo)
        assert_ready(service, task, photo, timeout=30)
        finished = time.monotonic()
        assert leftovers(upload_dir)

        own_redis.process.kill()
        own_redis.process.wait()
        own_redis.start()  # the same port, from its append-only file

        assert wait_until(lambda: not leftovers(upload_dir), timeout=20), leftovers(upload_dir)
        assert time.monotonic() - finished < 20
        assert service.get(task).status_code == 404
    finally:
        service.stop()


def test_a_redis_that_refuses_writes_gets_503_not_500(own_redis, scorer, tmp_path):
    """A replica (READONLY), like a server in protected mode (DENIED), is there but will not
    serve us: try again shortly, not a bug."""
    service, upload_dir = on_own_redis(own_redis, scorer, tmp_path)
    client = redis.Redis.from_url(own_redis.url)
    try:
        client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # a master that is not there
        answer = service.post(make_photo(400), name="Ann Lee")
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] and answer.json()["error"]["code"] == "unavailable"
        assert leftovers(upload_dir) == set()  # the rejected upload left nothing
        client.execute_command("REPLICAOF", "NO", "ONE")
        assert service.post(make_photo(400), name="Ann Lee").status_code == 202
    finally:
        service.stop()
        client.close()


def test_deleting_a_task_leaves_the_others_in_its_batch_running(make_service, scorer, redis_client):
    """Two tasks due together share one scoring job; deleting one must not cancel the
    other's run (it would only come back through the sweep, counted as a loss)."""
    service = make_service(workers=0)
    service.stop_workers()  # no dispatcher yet: both tasks wait on `pt:due`
    photos = [make_photo(500), make_photo(501)]
    first, second = (start_task(service, photo) for photo in photos)
    service.start_workers(0)  # the dispatcher alone: one job for both, left queued
    job = wait_until(lambda: len({redis_client.hget(f"pt:task:{t}", "job_id") for t in (first, second)}) == 1
                     and redis_client.hget(f"pt:task:{first}", "job_id"), timeout=10)
    assert job and redis_client.zscore("pt:due", second) is None

    assert service.delete(first).status_code == 200
    service.start_workers(1)
    assert_ready(service, second, photos[1], timeout=10)
    assert redis_client.hget(f"pt:task:{second}", "losses") is None
    assert [call["files"]["photo"]["sha256"] for call in scorer.calls()] == [hashlib.sha256(photos[1]).hexdigest()]


def test_a_delete_that_cannot_let_go_of_the_files_leaves_them_to_the_sweep(make_service, redis_client):
    """Redis killed while DELETEs run (seen on `make run`) leaves a photo's lock held by a
    request it cut short, for the lock's 30 s. A DELETE of another task of that photo must
    not answer 500 after waiting for the lock, and the files it could not remove must not
    stay forever (the photo's user set still naming the deleted task): the task is deleted,
    and the sweep lets go of its files once it can."""
    service = make_service(workers=1)
    photo = make_photo(520)
    task = start_task(service, photo)
    assert service.wait_done(task).json()["status"] == "ready"
    digest = hashlib.sha256(photo).hexdigest()
    redis_client.set(f"pt:photo_lock:{digest}", "a request cut short", px=12_000)

    # it waits for the lock up to 10 s, as long as the harness's usual client timeout
    answer = requests.delete(service.url, params={"task_id": task}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "deleted", "task": task, "result": None}
    assert service.get(task).status_code == 404
    upload_dir = service.settings.upload_dir
    assert wait_until(lambda: not leftovers(upload_dir), timeout=30), leftovers(upload_dir)
    assert not redis_client.exists(f"pt:photo:{digest}")


def test_a_post_that_finds_the_photo_lock_left_held_is_a_503_not_a_500(make_service, redis_client):
    """The same lock, left held by a request Redis cut short: a new task for that photo waits
    for it, then must answer 503 with Retry-After (Redis's trouble, try again shortly), not
    500 (a bug), and leave nothing behind."""
    service = make_service(workers=1)
    photo = make_photo(521)
    digest = hashlib.sha256(photo).hexdigest()
    redis_client.set(f"pt:photo_lock:{digest}", "a request cut short", px=11_000)

    # it waits for the lock up to 10 s (the client's usual timeout)
    answer = requests.post(service.url, files={"name": (None, "Ann Lee"), "photo": ("face.jpg", photo, "image/jpeg")},
                           timeout=30)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] and answer.json()["error"]["code"] == "unavailable"
    assert redis_client.get("pt:task_seq") == b"1" and not redis_client.exists("pt:task:1")
    upload_dir = service.settings.upload_dir
    assert wait_until(lambda: not leftovers(upload_dir), timeout=30), leftovers(upload_dir)
    assert start_task(service, photo)  # once the lock has gone


def worker_log(service) -> str:
    with open(os.path.join(service.settings.upload_dir, "..", "workers.log"), errors="replace") as log:
        return log.read()


@pytest.mark.parametrize("bound, why", [({"worker_max_jobs": 2}, "2 jobs done (WORKER_MAX_JOBS)"),
                                        ({"worker_max_memory": 1}, "MiB resident (WORKER_MAX_MEMORY)")])
def test_a_worker_past_its_bound_is_replaced_by_a_fresh_process(make_service, redis_client, bound, why):
    """Resizes run in the worker process; isolation is a worker replaced past a job count or a
    memory bound (after a job, counting the sweeps' own), in the same process (exec), so
    nothing needs to restart it, and tasks keep finishing across replacements."""
    service = make_service(workers=1, **bound)
    pid = service.workers[1].pid
    started = f"started with PID {pid}"
    for seed in range(4):  # each replaced worker's successor takes the next task
        answer = service.post(make_photo(300 + seed), width=20)
        assert answer.status_code == 202, answer.text
        done = service.wait_done(answer.json()["task"], timeout=30)
        assert done.json()["status"] == "ready", done.text
    assert wait_until(lambda: worker_log(service).count(started) >= 3, timeout=10)  # 2 replacements at least
    assert why in worker_log(service)
    assert service.workers[1].poll() is None  # the same process all along
    assert wait_until(lambda: len(Worker.all(connection=redis_client)) == 1, timeout=10)  # old ones deregistered
