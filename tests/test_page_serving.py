"""How the page is served over HTTP: to browsers only, without an API key, from this server
alone; API clients still get the API's answers at `/`. (What the page does is in
test_page.py, in a real browser.)"""

from __future__ import annotations

import re

import pytest
import requests

from harness import assert_error_shape

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


def get(service, path: str, accept: str | None = None, method: str = "GET") -> requests.Response:
    headers = {"Accept": accept} if accept is not None else {}
    return requests.request(method, service.url.rstrip("/") + path, headers=headers, timeout=10)


@pytest.mark.parametrize("settings", [{}, {"api_keys": "alice:s3cret"}])
def test_a_browser_gets_the_page_without_a_key(make_service, settings):
    service = make_service(workers=0, **settings)
    answer = get(service, "/", BROWSER_ACCEPT)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["Vary"] == "Accept"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    assert '<input id="photo" type="file" name="photo"' in answer.text
    assert 'type="password" name="api_key"' in answer.text
    # every file it loads comes from this server, and is served without a key
    for path in set(re.findall(r'(?:src|href)="(/[^"]*)"', answer.text)):
        asset = get(service, path)
        assert asset.status_code == 200, path
    assert "//" not in "".join(re.findall(r'(?:src|href)="([^"]*)"', answer.text))


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html, application/json"])
def test_api_clients_still_get_a_400_at_slash(service, accept):
    assert_error_shape(get(service, "/", accept), 400, "task_id")


def test_with_keys_an_api_client_still_needs_one(make_service):
    service = make_service(workers=0, api_keys="alice:s3cret")
    assert_error_shape(get(service, "/", "application/json"), 401)
    assert_error_shape(get(service, "/?task_id=1", BROWSER_ACCEPT), 401)  # a task is the API's


def test_the_assets_have_their_types(service):
    types = {"/page/app.js": "text/javascript", "/page/style.css": "text/css", "/page/icon.svg": "image/svg+xml"}
    for path, mime in types.items():
        answer = get(service, path)
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith(mime), path
        assert answer.headers["ETag"]
        assert get(service, path, method="HEAD").status_code == 200


@pytest.mark.parametrize("path", ["/page/nothing.js", "/page/../app.py", "/page/%2e%2e/app.py", "/page/",
                                  "/page/index.html"])
def test_no_other_file_is_served(service, path):
    assert_error_shape(get(service, path), 404)


def test_the_page_only_reads(service):
    answer = get(service, "/page/app.js", method="POST")
    assert answer.status_code == 405 and answer.headers["Allow"] == "GET, HEAD"
