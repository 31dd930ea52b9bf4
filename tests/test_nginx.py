"""docs/nginx.conf, the reverse proxy of docs/operations.md, run as written (only its two ports swapped)
in front of the real service. Skipped where nginx is not installed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest
import requests

from harness import LARGE_HEAD, ROOT, assert_json_error, make_photo, read_answer
from src.local.embedded_redis import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not os.access(NGINX, os.X_OK), reason="nginx is not installed")

MAIN = """daemon off;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/photo-tasks.conf;
}}
"""


@pytest.fixture
def proxy(make_service, tmp_path):
    """The service with TRUSTED_PROXIES=1, and nginx before it: nginx's base URL."""
    service = make_service(trusted_proxies=1)
    port = free_port()
    with open(os.path.join(ROOT, "docs", "nginx.conf")) as example:
        site = example.read().replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{service.server.effective_port};")
    (tmp_path / "photo-tasks.conf").write_text(site.replace("listen 80;", f"listen 127.0.0.1:{port};"))
    (tmp_path / "nginx.conf").write_text(MAIN.format(tmp=tmp_path))
    nginx = subprocess.Popen([NGINX, "-c", str(tmp_path / "nginx.conf")], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 10
    while True:
        try:
            requests.get(url, timeout=1)
            break
        except requests.ConnectionError:
            assert nginx.poll() is None and time.monotonic() < deadline, nginx.stderr.read()
            time.sleep(0.05)
    yield url
    nginx.terminate()
    nginx.wait(timeout=10)


def test_requests_pass_through_with_the_client_address(proxy):
    created = requests.post(proxy, files={"photo": ("a.jpg", make_photo(1)), "name": (None, "Ann Lee")},
                            headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10)
    assert created.status_code == 202, created.text
    assert created.headers["X-Content-Type-Options"] == "nosniff"
    # Open mode: the user is the address nginx saw, not the one the client claimed.
    again = requests.post(proxy, files={"photo": ("a.jpg", make_photo(1)), "name": (None, "Ann Lee")}, timeout=10)
    assert again.json()["task"] == created.json()["task"]


def test_body_over_the_limit_gets_the_json_413_from_nginx(proxy):
    host, port = proxy.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(LARGE_HEAD + b"\r\n" + b"x" * 1024)
        assert assert_json_error(read_answer(sock), 413)["code"] == "too_large"
