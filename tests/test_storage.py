"""Where files live: every line of the contract's section, on local disk and on a real
S3-compatible store (SeaweedFS's `weed`, started by the `weed` fixture): the resize and
scoring flows, results served with their Content-Type, ETag/304, one range and 416, DELETE,
expiry and the orphan sweep removing objects, a rejected request storing nothing, the store
killed and restarted with tasks waiting, and two copies of the service that share only
Redis and the store."""

from __future__ import annotations

import io
import os
import time

from PIL import Image

from harness import WEED_BUCKET, Service, assert_error_shape, files_under, make_photo, wait_for
from src.local.simulator import expected_score

NAME = "Ada Lovelace"


def ready(service, task: int, timeout: float = 20) -> dict:
    done = service.wait_done(task, timeout=timeout)
    assert done.status_code == 200 and done.json()["status"] == "ready", done.text
    return done.json()


def test_a_resize_is_stored_served_and_deleted(make_service, backend):
    service = make_service(**backend.env)
    task = service.post(make_photo(1, (400, 300)), width=100, format="png").json()["task"]
    url = ready(service, task)["result"]["url"]
    stored = backend.stored(service)
    assert [p.split("/")[0] for p in sorted(stored)] == ["photos", "results"], stored

    whole = service.fetch(url)
    assert whole.status_code == 200 and whole.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(whole.content)).size == (100, 75)
    assert "max-age=31536000" in whole.headers["Cache-Control"] and "private" in whole.headers["Cache-Control"]
    assert whole.headers["Accept-Ranges"] == "bytes" and whole.headers["Last-Modified"]
    assert service.fetch(url, headers={"If-None-Match": whole.headers["ETag"]}).status_code == 304
    part = service.fetch(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == whole.content[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(whole.content)}"
    assert service.fetch(url, headers={"Range": "bytes=0-1,5-9"}).content == whole.content  # several: the whole
    past = service.fetch(url, headers={"Range": "bytes=999999-"})
    assert_error_shape(past, 416)
    assert past.headers["Content-Range"] == f"bytes */{len(whole.content)}"
    head = service.fetch(url, method="HEAD")
    assert head.status_code == 200 and head.content == b""

    assert service.delete(task).status_code == 200
    assert_error_shape(service.fetch(url), 404)
    assert backend.stored(service) == set()


def test_a_photo_is_stored_once_and_kept_while_a_task_uses_it(make_service, backend):
    service = make_service(**backend.env)
    photo = make_photo(2, (300, 200))
    first = service.post(photo, width=50).json()["task"]
    second = service.post(photo, width=60).json()["task"]
    ready(service, first), ready(service, second)
    assert len([p for p in backend.stored(service) if p.startswith("photos/")]) == 1
    assert service.delete(first).status_code == 200
    assert len([p for p in backend.stored(service) if p.startswith("photos/")]) == 1
    assert service.delete(second).status_code == 200
    assert backend.stored(service) == set()


def test_a_scoring_task_sends_the_stored_photo(make_service, backend):
    service = make_service(**backend.env)
    photo = make_photo(3)
    task = service.post(photo, name=NAME).json()["task"]
    assert ready(service, task)["result"] == expected_score(NAME, photo)
    assert service.delete(task).status_code == 200
    assert backend.stored(service) == set()


def test_expiry_removes_the_tasks_files(make_service, backend):
    service = make_service(task_ttl=1, **backend.env)
    url = ready(service, service.post(make_photo(4, (300, 200)), width=50).json()["task"])["result"]["url"]
    wait_for(lambda: service.fetch(url).status_code == 404, timeout=10)
    wait_for(lambda: backend.stored(service) == set(), timeout=10)


def test_what_no_task_names_is_swept_after_the_grace(make_service, backend):
    service = make_service(orphan_grace=0, **backend.env)
    task = service.post(make_photo(5, (300, 200)), width=50).json()["task"]
    ready(service, task)
    stray = {"photos/" + "ab" * 32, "results/" + "x" * 32 + ".jpg"}
    for path in stray:
        _store_stray(service, backend, path)
    wait_for(lambda: not stray & backend.stored(service), timeout=10)
    assert len(backend.stored(service)) == 2  # the task's photo and result stay


def _store_stray(service, backend, path: str) -> None:
    if backend.weed is None:
        kind, name = path.split("/")
        full = os.path.join(service.settings.upload_dir, kind, name[:2] if kind == "photos" else "", name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        open(full, "wb").close()
    else:
        backend.weed.client().put_object(WEED_BUCKET, f"{backend.prefix}/{path}", io.BytesIO(b"x"), 1)


def test_a_rejected_request_stores_nothing(make_service, s3_backend, rejected):
    service = make_service(**s3_backend.env)
    rejected(service, lambda: service.post(b"not an image", filename="x.jpg", width=50), 415, "photo")
    rejected(service, lambda: service.post(make_photo(6), width=0), 400, "width")
    assert s3_backend.stored(service) == set()


def test_readyz_names_the_store(make_service, s3_backend):
    service = make_service(**s3_backend.env)
    service.wait_for_workers(1)
    body = service.fetch("/readyz").json()
    assert body["status"] == "ready"
    assert body["storage"]["kind"] == "s3" and body["storage"]["status"] == "ok"
    assert body["storage"]["bucket"]


def test_the_store_killed_and_back_with_tasks_waiting(make_service, s3_backend, weed):
    """kill -9 of the store: meanwhile POST and result GETs answer 503 with Retry-After and
    /readyz says why; the jobs wait (they are not lost), and every task finishes once it is back."""
    service = make_service(**s3_backend.env)
    url = ready(service, service.post(make_photo(7, (300, 200)), width=50).json()["task"])["result"]["url"]
    service.stop_workers()
    resize = service.post(make_photo(8, (400, 300)), width=80).json()["task"]
    score = service.post(make_photo(9), name=NAME).json()["task"]
    weed.kill()
    try:
        service.start_workers(1)
        for answer in (service.post(make_photo(10), width=50), service.fetch(url)):
            assert_error_shape(answer, 503)
            assert answer.headers["Retry-After"]
        readyz = service.fetch("/readyz")
        assert readyz.status_code == 503 and readyz.json()["storage"]["status"] == "unreachable"
        time.sleep(2)  # the jobs meet the store away
        assert service.get(resize).status_code == 202 and service.get(score).status_code == 202
    finally:
        weed.start()
    assert ready(service, resize, timeout=30)["result"]["width"] == 80
    assert ready(service, score, timeout=30)["result"] == expected_score(NAME, make_photo(9))
    assert service.fetch(service.get(resize).json()["result"]["url"]).status_code == 200
    assert service.fetch(url).status_code == 200


def test_two_copies_share_only_redis_and_the_store(make_service, s3_backend, tmp_path):
    """Two hosts, as far as files go: each copy has its own empty UPLOAD_DIR and VAR_DIR."""
    first = make_service(var_dir=str(tmp_path / "var0"), **s3_backend.env)
    first.stop_workers()
    second = make_service(var_dir=str(tmp_path / "var1"), **s3_backend.env)
    task = first.post(make_photo(12, (400, 300)), width=100).json()["task"]
    result = ready(first, task)["result"]
    for copy in (first, second):
        served = copy.fetch(result["url"])
        assert served.status_code == 200 and Image.open(io.BytesIO(served.content)).size == (100, 75)
    for copy in (first, second):  # nothing but the web's own upload spools on either host
        assert {p for p in _files(copy) if not p.startswith("tmp/")} == set()
    assert second.delete(task).status_code == 200
    assert_error_shape(first.fetch(result["url"]), 404)


def _files(service: Service) -> set[str]:
    return files_under(service.settings.upload_dir)
