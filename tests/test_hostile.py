"""Hostile and heavy clients, over real HTTP (raw sockets where a client library would hide
the attack): slow connections, bodies over the limit, forms past their limits, forged log
lines, ranges past the end, malformed HTTP; and photos whose damage only their job can see.
Every answer is the one JSON error shape, with `nosniff` and an `X-Request-Id`."""

from __future__ import annotations

import hashlib
import io
import logging
import select
import struct
import zlib

import pytest
import requests
from PIL import Image

from harness import (
    BOUNDARY,
    LARGE_HEAD,
    assert_error_shape,
    assert_json_error,
    connect,
    exchange,
    files_under,
    make_photo,
    multipart_head,
    noisy_photo,
    parse,
    read_answer,
)

NAME = "Ann Lee"


# --- slow clients ----------------------------------------------------------------------------

def test_two_hundred_slow_clients_do_not_shut_others_out(service):
    """Each sends its request line and then a header now and again, never finishing."""
    slow = []
    try:
        for _ in range(200):
            sock = connect(service)
            sock.sendall(b"GET /?task_id=1 HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        for _ in range(3):
            for sock in slow:
                sock.sendall(b"X-Trickle: 1\r\n")
            answer = requests.get(service.url, params={"task_id": 1}, timeout=5)
            assert answer.status_code == 404
    finally:
        for sock in slow:
            sock.close()


# --- bodies over MAX_UPLOAD_BYTES ---------------------------------------------------------------


def test_content_length_over_the_limit_gets_413_before_the_body(service):
    """200 MiB announced, 1 KiB sent: the answer comes at once (the read would time out)."""
    with connect(service) as sock:
        sock.sendall(LARGE_HEAD + b"\r\n" + multipart_head(("name", b"x" * 1000)))
        error = assert_json_error(read_answer(sock), 413)
    assert error["code"] == "too_large"
    assert str(service.settings.max_upload_bytes) in error["message"]


def test_expect_100_continue_over_the_limit_gets_413_not_an_invitation(service):
    with connect(service) as sock:
        sock.sendall(LARGE_HEAD + b"Expect: 100-continue\r\n\r\n")
        answer = read_answer(sock)
    assert not answer.startswith(b"HTTP/1.1 100")
    assert assert_json_error(answer, 413)["code"] == "too_large"


def scoring_body() -> bytes:
    """A whole scoring request's multipart body (`name` and a photo), with BOUNDARY."""
    return (multipart_head(("name", NAME.encode()))
            + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n'.encode()
            + make_photo(2) + f"\r\n--{BOUNDARY}--\r\n".encode())


@pytest.mark.parametrize("spare, status", [(0, 202), (-1, 413)], ids=["at-the-limit", "one-byte-over"])
def test_the_limit_is_max_upload_bytes_exactly(make_service, spare, status):
    body = scoring_body()
    service = make_service(max_upload_bytes=len(body) + spare)
    answer = requests.post(service.url, data=body, timeout=10,
                           headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert answer.status_code == status, answer.text


@pytest.mark.parametrize("spare, status", [(0, 202), (-1, 413)], ids=["at-the-limit", "one-byte-over"])
def test_the_limit_is_max_upload_bytes_exactly_for_a_chunked_body(make_service, spare, status):
    """The body's own bytes count, not the chunked framing around them (sizes, line ends)."""
    body = scoring_body()
    service = make_service(max_upload_bytes=len(body) + spare)
    chunks = (body[start:start + 100] for start in range(0, len(body), 100))
    answer = requests.post(service.url, data=chunks, timeout=10,
                           headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert answer.status_code == status, answer.text


def test_chunked_framing_is_bounded_too(make_service):
    """Chunk extensions that never end carry no body bytes, but are cut off all the same."""
    service = make_service(max_upload_bytes=20_000)
    with connect(service) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: multipart/form-data; boundary=" + BOUNDARY.encode() + b"\r\n\r\n")
        try:
            for _ in range(100):  # up to 5 × the limit, as 1-byte chunks with long extensions
                sock.sendall(b"1;ext=" + b"x" * 990 + b"\r\n\0\r\n")
        except OSError:  # closed after its answer
            pass
        answer = read_answer(sock)
    assert assert_json_error(answer, 400)["code"] == "bad_request"


def test_chunked_body_is_cut_off_once_it_passes_the_limit(make_service, rejected):
    service = make_service(max_upload_bytes=20_000)
    before = files_under(service.settings.upload_dir)
    chunk = b"3e8\r\n" + b"\0" * 1000 + b"\r\n"
    sent = 0
    with connect(service) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: multipart/form-data; boundary=" + BOUNDARY.encode() + b"\r\n\r\n")
        for _ in range(200):  # up to 10 × the limit
            try:
                sock.sendall(chunk)
            except OSError:  # closed after its answer
                break
            sent += 1000
            if select.select([sock], [], [], 0.02)[0]:
                break
        answer = read_answer(sock)
    assert assert_json_error(answer, 413)["code"] == "too_large"
    assert sent < 2 * 20_000, f"the answer came after {sent} bytes"
    assert files_under(service.settings.upload_dir) == before


# --- form limits: 400, not 413 ------------------------------------------------------------------

def form_limit_error(answer: requests.Response) -> None:
    error = assert_error_shape(answer, 400)["error"]
    assert error["code"] == "form_too_large"
    assert "32 parts" in error["message"] and "500000 bytes" in error["message"]


@pytest.mark.parametrize("parts", [
    [(f"extra{i}", (None, "x")) for i in range(33)],
    [("name", (None, "A" * 510_000))],
    [("n" * 1_000_000, (None, "x"))],
    [("notes", (None, b"\x01" * 600_000, "text/plain"))],
], ids=["33-parts", "510KB-name", "1MB-field-name", "600KB-text-part"])
def test_form_past_its_limits_is_400_naming_them(service, rejected, parts):
    files = [*parts, ("photo", ("face.jpg", make_photo(1), "image/jpeg"))]
    answer = rejected(service, lambda: requests.post(service.url, files=files, timeout=10), 400)
    form_limit_error(answer)


# --- the log: one request, one line -----------------------------------------------------------

@pytest.mark.parametrize("target", [
    b"/x%0a2026-11-25%2012:00:00,000%20INFO%20photo_tasks:%20forged",
    b"/x\x1b[2J\x00?task_id=1\x08\x7f",
], ids=["encoded-newline", "raw-control-characters"])
def test_log_lines_cannot_be_forged(service, caplog, target):
    with caplog.at_level(logging.INFO, logger="photo_tasks"):
        answer = exchange(service, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    request_id = parse(answer)[1]["x-request-id"]
    lines = [record.getMessage() for record in caplog.records if request_id in record.getMessage()]
    assert len(lines) == 1
    assert all(char.isprintable() for char in lines[0]), lines
    assert "%0a" in lines[0] or "\\x1b" in lines[0], lines


def test_404_does_not_echo_the_path(service):
    body = requests.get(service.url + "<script>alert(1)</script>", timeout=10)
    assert_error_shape(body, 404)
    assert "script" not in body.text


# --- result files: ranges and headers ----------------------------------------------------------

@pytest.fixture
def result_url(service) -> str:
    task = service.post(make_photo(3, (400, 300)), width=100).json()["task"]
    return service.wait_done(task).json()["result"]["url"]


def test_range_past_the_end_is_416_with_content_range(service, result_url):
    size = len(service.fetch(result_url).content)
    answer = service.fetch(result_url, headers={"Range": "bytes=999999-"})
    error = assert_error_shape(answer, 416)["error"]
    assert error["code"] == "requested_range_not_satisfiable"
    assert answer.headers["Content-Range"] == f"bytes */{size}"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_several_ranges_get_the_whole_file(service, result_url):
    """Ranges that can be served, but more than one: the whole file (200), as the HTTP spec
    lets a server ignore a Range, not 416, which says none of them can be."""
    whole = service.fetch(result_url).content
    answer = service.fetch(result_url, headers={"Range": "bytes=0-1,5-6"})
    assert answer.status_code == 200
    assert answer.content == whole
    assert service.fetch(result_url, headers={"Range": "bytes=5-6"}).content == whole[5:7]


def test_every_answer_says_nosniff(service, result_url):
    etag = service.fetch(result_url).headers["ETag"]
    answers = [
        service.fetch(result_url),
        service.fetch(result_url, method="HEAD"),
        service.fetch(result_url, headers={"If-None-Match": etag}),  # 304
        service.fetch(result_url, headers={"Range": "bytes=0-9"}),  # 206
        service.fetch(result_url, method="DELETE"),  # 405
        service.fetch("/files/nothing.jpg"),
        service.post(make_photo(4), name=NAME),
        service.post(b"not an image", name=NAME),
        service.get(1),
        service.get("x"),
        service.delete(999),
        requests.put(service.url, timeout=10),
        requests.post(service.url, json={}, timeout=10),
    ]
    assert {answer.status_code for answer in answers} >= {200, 202, 206, 304, 400, 404, 405, 415}
    for answer in answers:
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", (answer.status_code, answer.url)


# --- malformed HTTP: waitress refuses it, in our shape ----------------------------------------

@pytest.mark.parametrize("request_bytes, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
], ids=["request-line", "lower-case-method", "nul-in-header", "bad-content-length",
        "negative-content-length", "300KB-header", "unknown-transfer-encoding", "bad-chunk"])
def test_malformed_http_gets_the_error_shape(service, request_bytes, status):
    assert_json_error(exchange(service, request_bytes), status)


# --- the bind address ---------------------------------------------------------------------------

def test_host_setting_is_the_address_served(make_service):
    service = make_service(workers=0, host="127.0.0.2")
    assert requests.get(service.url, params={"task_id": 1}, timeout=5).status_code == 404
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{service.server.effective_port}/", timeout=5)


# --- damage only the job can see -----------------------------------------------------------------

def png_with_short_pixel_data() -> bytes:
    """A PNG whose every chunk is whole, CRCs right, IEND there, but whose compressed pixel
    data stops half-way: what upload checks pass and only a full decode finds out."""
    photo = noisy_photo("PNG", (64, 48), seed=5)
    out, position = photo[:8], 8
    while position < len(photo):
        (length,) = struct.unpack(">I", photo[position:position + 4])
        kind, body = photo[position + 4:position + 8], photo[position + 8:position + 8 + length]
        if kind == b"IDAT":
            body = body[:len(body) // 2]
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        position += 12 + length
    return out


def test_photo_that_fails_to_decode_fails_its_resize_with_corrupt_image(service):
    answer = service.post(png_with_short_pixel_data(), width=32)
    assert answer.status_code == 202, answer.text
    failed = service.wait_done(answer.json()["task"]).json()
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "corrupt_image"
    assert not any(path.startswith("results") for path in files_under(service.settings.upload_dir))


def test_photo_that_fails_to_decode_goes_to_the_scorer_unchanged(service, scorer):
    photo = png_with_short_pixel_data()
    task = service.post(photo, name=NAME).json()["task"]
    assert service.wait_done(task).json()["status"] == "ready"
    assert scorer.calls()[0]["files"]["photo"]["sha256"] == hashlib.sha256(photo).hexdigest()


def test_large_png_is_accepted_without_decoding_it(service):
    """45 MP that compress to little: checked from its structure, not its pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (8000, 5625), (10, 20, 30)).save(buffer, "PNG")
    answer = service.post(buffer.getvalue(), name=NAME, filename="big.png")
    assert answer.status_code == 202, answer.text
