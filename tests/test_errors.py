"""Every error row of the contract, and who may see what: each rejected request answers the
one error shape and leaves nothing behind (no task, no job, no file)."""

from __future__ import annotations

import io
import json
import time

import pytest
import requests
from PIL import Image

from harness import assert_error_shape, bearer, files_under, make_photo, noisy_photo

NAME = "Ann Lee"


# --- 400: fields ------------------------------------------------------------------------

def test_photo_missing(service, rejected):
    rejected(service, lambda: service.post(name=NAME), 400, "photo")


def test_name_missing(service, rejected):
    rejected(service, lambda: service.post(make_photo(1)), 400, "name")


@pytest.mark.parametrize("name", ["", "   ", "A" * 101, "12345", "Ann\x07", "Ann\nLee", "Ann\x00"],
                         ids=["empty", "spaces", "101-chars", "digits", "bell", "newline", "nul"])
def test_invalid_name(service, rejected, name):
    rejected(service, lambda: service.post(make_photo(1), name=name), 400, "name")


def test_name_and_width_together(service, rejected):
    rejected(service, lambda: service.post(make_photo(1), name=NAME, width=100), 400, ("name", "width"))


def test_name_and_height_together(service, rejected):
    rejected(service, lambda: service.post(make_photo(1), name=NAME, height=100), 400, ("name", "height"))


def test_name_of_100_characters_is_accepted(service):
    answer = service.post(make_photo(1), name="A" * 100)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "received"


def test_name_of_100_characters_with_spaces_around_is_accepted(service):
    answer = service.post(make_photo(1), name="  " + "B" * 100 + "  ")
    assert answer.status_code == 202, answer.text


# --- 400: task_id -----------------------------------------------------------------------

BAD_TASK_IDS = ["abc", "0", "-1", "1.5", "1" * 19, "", " 1", "1 ", "+1", "0x1", "\uff11"]


@pytest.mark.parametrize("task_id", BAD_TASK_IDS)
def test_get_with_invalid_task_id(service, rejected, task_id):
    rejected(service, lambda: service.get(task_id), 400, "task_id")


@pytest.mark.parametrize("task_id", BAD_TASK_IDS)
def test_delete_with_invalid_task_id(service, rejected, task_id):
    rejected(service, lambda: service.delete(task_id), 400, "task_id")


def test_get_without_task_id(service, rejected):
    rejected(service, lambda: requests.get(service.url, timeout=10), 400, "task_id")


def test_delete_without_task_id(service, rejected):
    rejected(service, lambda: requests.delete(service.url, timeout=10), 400, "task_id")


def test_task_id_of_18_digits_is_valid(service):
    answer = service.get("9" * 18)
    assert answer.status_code == 404
    assert answer.json() == {"status": "not_found", "task": int("9" * 18), "result": None}


# --- 401 --------------------------------------------------------------------------------

BAD_AUTH = {
    "none": {},
    "wrong-key": bearer("nope"),
    "basic": {"Authorization": "Basic YWxpY2U6azE="},
    "empty-bearer": {"Authorization": "Bearer "},
    "key-without-scheme": {"Authorization": "k1"},
}


@pytest.fixture
def keyed(make_service):
    return make_service(api_keys="alice:k1,bob:k2")


def finished_task(keyed) -> int:
    """One of alice's tasks, once it has ended: nothing changes in the service meanwhile, so
    a refused request's traces (or their absence) are its own."""
    task = keyed.post(make_photo(1), name=NAME, headers=bearer("k1")).json()["task"]
    assert keyed.wait_done(task, headers=bearer("k1")).json()["status"] == "ready"
    return task


def assert_unauthorized(answer):
    assert "Bearer" in answer.headers.get("WWW-Authenticate", "")


@pytest.mark.parametrize("headers", BAD_AUTH.values(), ids=BAD_AUTH.keys())
def test_post_without_valid_key(keyed, rejected, headers):
    answer = rejected(keyed, lambda: keyed.post(make_photo(1), name=NAME, headers=headers), 401)
    assert_unauthorized(answer)


@pytest.mark.parametrize("headers", BAD_AUTH.values(), ids=BAD_AUTH.keys())
def test_get_without_valid_key(keyed, rejected, headers):
    task = finished_task(keyed)
    answer = rejected(keyed, lambda: keyed.get(task, headers=headers), 401)
    assert_unauthorized(answer)


@pytest.mark.parametrize("headers", BAD_AUTH.values(), ids=BAD_AUTH.keys())
def test_delete_without_valid_key(keyed, rejected, headers):
    task = finished_task(keyed)
    answer = rejected(keyed, lambda: keyed.delete(task, headers=headers), 401)
    assert_unauthorized(answer)
    assert keyed.get(task, headers=bearer("k1")).status_code in (200, 202)


@pytest.mark.parametrize("method, path", [("PUT", "/"), ("OPTIONS", "/"), ("GET", "/nope"), ("DELETE", "/x")])
def test_other_methods_and_paths_without_valid_key(keyed, rejected, method, path):
    """With API_KEYS set every request but the page, the result files and the operators'
    paths needs a key: a wrong method or path is not told apart from a right one without it."""
    answer = rejected(keyed, lambda: requests.request(method, keyed.url.rstrip("/") + path, timeout=10), 401)
    assert_unauthorized(answer)
    with_key = requests.request(method, keyed.url.rstrip("/") + path, headers=bearer("k1"), timeout=10)
    assert with_key.status_code == (405 if path == "/" else 404)


def test_right_key_works(keyed):
    created = keyed.post(make_photo(1), name=NAME, headers=bearer("k1"))
    assert created.status_code == 202
    task = created.json()["task"]
    assert keyed.wait_done(task, headers=bearer("k1")).json()["status"] == "ready"
    assert keyed.delete(task, headers=bearer("k1")).status_code == 200


def test_other_users_task_does_not_exist_for_them(keyed):
    task = keyed.post(make_photo(1), name=NAME, headers=bearer("k1")).json()["task"]
    not_found = {"status": "not_found", "task": task, "result": None}

    get = keyed.get(task, headers=bearer("k2"))
    assert get.status_code == 404
    assert get.json() == not_found
    delete = keyed.delete(task, headers=bearer("k2"))
    assert delete.status_code == 404
    assert delete.json() == not_found

    mine = keyed.get(task, headers=bearer("k1"))
    assert mine.status_code in (200, 202)
    assert mine.json()["task"] == task


def test_open_mode_anyone_with_the_number_reads_the_task(service):
    task = service.post(make_photo(1), name=NAME).json()["task"]
    answer = requests.get(service.url, params={"task_id": task}, timeout=10)
    assert answer.status_code in (200, 202)
    assert answer.json()["task"] == task


_PARTS = (b'--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nAnn Lee\r\n'
          b'--xyz\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n'
          + make_photo(1) + b"\r\n")


@pytest.mark.parametrize("body, content_type", [
    (_PARTS, "multipart/form-data; boundary=xyz"),
    (_PARTS[:-300], "multipart/form-data; boundary=xyz"),
    (b"garbage", "multipart/form-data; boundary=xyz"),
    (_PARTS + b"--xyz--\r\n", "multipart/form-data"),
    (_PARTS.replace(b'Content-Disposition: form-data; name="name"', b"X-Part: 1") + b"--xyz--\r\n",
     "multipart/form-data; boundary=xyz"),
], ids=["no-closing-boundary", "cut-in-the-photo", "no-parts", "no-boundary-parameter", "part-without-disposition"])
def test_broken_multipart_body_is_invalid_body(service, rejected, body, content_type):
    """Not an empty form that lacks `name`: werkzeug's parser would drop the whole body quietly."""
    answer = rejected(service, lambda: requests.post(service.url, data=body, timeout=10,
                                                     headers={"Content-Type": content_type}), 400)
    assert answer.json()["error"]["code"] == "invalid_body"


# --- 413 --------------------------------------------------------------------------------

@pytest.fixture
def small(make_service):
    return make_service(max_upload_bytes=20000)


def test_body_over_max_upload_bytes(small, rejected):
    photo = noisy_photo("PNG")  # a real image of well over 50 KB
    assert len(photo) > 50_000
    rejected(small, lambda: small.post(photo, name=NAME), 413)


def test_chunked_body_over_max_upload_bytes(small, rejected):
    boundary = "xxBOUNDARYxx"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{NAME}\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.png\"\r\n"
               "Content-Type: image/png\r\n\r\n").encode()
        for _ in range(50):
            yield b"\0" * 1000
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    rejected(small, lambda: requests.post(small.url, data=body(), headers=headers, timeout=10), 413)


def test_body_over_max_upload_bytes_of_any_type(small, rejected):
    body = json.dumps({"name": NAME, "photo": "x" * 50_000})
    rejected(small, lambda: requests.post(small.url, data=body, timeout=10,
                                          headers={"Content-Type": "application/json"}), 413)


def test_body_under_max_upload_bytes_is_accepted(small):
    answer = small.post(make_photo(1), name=NAME)
    assert answer.status_code == 202, answer.text


# --- 415 --------------------------------------------------------------------------------

def test_urlencoded_body(service, rejected):
    rejected(service, lambda: requests.post(service.url, data={"name": NAME}, timeout=10), 415)


def test_json_body(service, rejected):
    rejected(service, lambda: requests.post(service.url, json={"name": NAME, "photo": "x"}, timeout=10), 415)


def test_body_without_content_type(service, rejected):
    rejected(service, lambda: requests.post(service.url, data=b"hello", timeout=10), 415)


@pytest.mark.parametrize("photo", [
    b"hello",
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    make_photo(1, fmt="PPM"),
    make_photo(1, size=(32, 32), fmt="ICO"),
], ids=["text", "pdf", "ppm", "ico"])
def test_photo_not_a_supported_image(service, rejected, photo):
    rejected(service, lambda: service.post(photo, name=NAME, filename="face.jpg", content_type="image/jpeg"),
             415, "photo")


# --- 422 --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(service, rejected, fmt):
    photo = noisy_photo(fmt)
    rejected(service, lambda: service.post(photo[: len(photo) // 2], name=NAME), 422, "photo")


def _lzw_tiff() -> bytes:
    """A TIFF as libtiff writes a compressed one: its directory (size, strips) at the end."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(noisy_photo("PNG"))).save(buffer, "TIFF", compression="tiff_lzw")
    return buffer.getvalue()


@pytest.mark.parametrize("photo", [
    _lzw_tiff()[: len(_lzw_tiff()) // 2],
    noisy_photo("GIF")[:64],
    noisy_photo("PNG")[:40],
    noisy_photo("JPEG")[:4],
    noisy_photo("WEBP")[:12],
], ids=["tiff-lzw-half", "gif-64-bytes", "png-40-bytes", "jpeg-4-bytes", "webp-12-bytes"])
def test_image_cut_before_its_header_ends_is_422_not_415(service, rejected, photo):
    """A file that begins as a supported format but whose header Pillow cannot read is that
    image, truncated: 422, not "not a supported image"."""
    answer = rejected(service, lambda: service.post(photo, name=NAME), 422, "photo")
    assert answer.json()["error"]["code"] == "corrupt_image"


def test_image_over_max_image_pixels(make_service, rejected):
    service = make_service(max_image_pixels=1000)
    rejected(service, lambda: service.post(make_photo(1, size=(64, 48)), name=NAME), 422, "photo")


def test_image_at_max_image_pixels_is_accepted(make_service):
    service = make_service(max_image_pixels=64 * 48)
    answer = service.post(make_photo(1, size=(64, 48)), name=NAME)
    assert answer.status_code == 202, answer.text


# --- accepted formats -------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_supported_format_recognised_by_content(service, fmt):
    answer = service.post(make_photo(2, fmt=fmt), name=NAME, filename="notes.txt",
                          content_type="application/octet-stream")
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "received"


def test_jpeg_with_bytes_after_its_end_marker_is_accepted(service):
    """Some cameras append data after the end-of-image marker: the marker is searched for,
    not only expected at the end."""
    answer = service.post(noisy_photo("JPEG") + b"\0camera trailer" * 100, name=NAME)
    assert answer.status_code == 202, answer.text


def test_phone_multi_picture_jpeg_is_a_jpeg(service, scorer):
    """Phones write MPO: a JPEG with more pictures appended. Pillow names it apart."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buffer, "MPO", save_all=True,
                                           append_images=[Image.new("RGB", (64, 48), "blue")])
    answer = service.post(buffer.getvalue(), name=NAME, filename="IMG_0001.JPG")
    assert answer.status_code == 202, answer.text
    assert service.wait_done(answer.json()["task"]).json()["status"] == "ready"
    assert scorer.calls()[0]["files"]["photo"]["content_type"] == "image/jpeg"


# --- 405 and unknown paths --------------------------------------------------------------

@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS"])
def test_other_methods_not_allowed(service, rejected, method):
    answer = rejected(service, lambda: requests.request(method, service.url, timeout=10), 405)
    allowed = {part.strip() for part in answer.headers.get("Allow", "").split(",")}
    assert {"GET", "POST", "DELETE"} <= allowed


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_unknown_path(service, rejected, method):
    rejected(service, lambda: requests.request(method, service.url + "nope", timeout=10), 404)


# --- 503 --------------------------------------------------------------------------------

def test_redis_down_answers_503_then_recovers(service, redis_server):
    photo = make_photo(3)
    task = service.post(photo, name=NAME).json()["task"]
    ready = service.wait_done(task).json()
    assert ready["status"] == "ready"
    files_before = files_under(service.settings.upload_dir)

    redis_server.stop()
    try:
        for send in (lambda: service.post(make_photo(4), name=NAME), lambda: service.get(task),
                     lambda: service.delete(task)):
            started = time.monotonic()
            answer = send()
            elapsed = time.monotonic() - started
            assert_error_shape(answer, 503)
            assert answer.headers.get("Retry-After", "").isdigit(), answer.headers
            assert elapsed < 1.5, elapsed
        assert files_under(service.settings.upload_dir) == files_before
    finally:
        redis_server.start()

    again = service.get(task)
    assert again.status_code == 200, again.text
    assert again.json()["result"] == ready["result"]
    created = service.post(make_photo(5), name=NAME)
    assert created.status_code == 202, created.text
    assert created.json()["status"] == "received"
