"""No request can forge a log line: what a client controls is escaped."""

from __future__ import annotations

import pytest

from src.web.access_log import escape, raw_target


@pytest.mark.parametrize(("text", "logged"), [
    ("/?task_id=1", "/?task_id=1"),
    ("/x\n2026-12-01 INFO forged", "/x\\n2026-12-01 INFO forged"),
    ("a\\b", "a\\\\b"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("caf\u00e9", "caf\u00e9"),
])
def test_escape(text, logged):
    assert escape(text) == logged


def test_the_raw_target_is_what_the_client_sent():
    assert raw_target({"REQUEST_URI": "/a%0Ab?x=1", "PATH_INFO": "/a\nb"}) == "/a%0Ab?x=1"
    assert raw_target({"PATH_INFO": "/a\nb", "QUERY_STRING": "x=1"}) == "/a%0Ab?x=1"
