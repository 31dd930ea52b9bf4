"""The client of the remote name-scoring API (the "merlinface" protocol).

One call is one HTTP POST; its answer is sorted into one of four kinds, and the scoring job
decides what to do next. Nothing here sleeps or retries.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, BinaryIO

import requests

from src import metrics

READY, WAIT, REJECTED, FAULT = "ready", "wait", "rejected", "fault"


@dataclass(frozen=True)
class Answer:
    kind: str
    result: float | None = None
    retry_id: Any = None
    detail: str = ""


class ScorerClient:
    def __init__(self, url: str, timeout: float, pool_size: int = 10):
        """`pool_size`: connections kept open to the scorer, for calls made side by side."""
        self.url = url
        self.timeout = timeout
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def start(self, name: str, photo: str | BinaryIO, filename: str, content_type: str) -> Answer:
        """First call: the name and the photo (a path, or an open file), with its file name
        and type."""
        if not isinstance(photo, str):
            return self._post({"name": (None, name), "photo": (filename, photo, content_type)})
        with open(photo, "rb") as file:
            return self._post({"name": (None, name), "photo": (filename, file, content_type)})

    def poll(self, retry_id: Any) -> Answer:
        """Later calls: only the retry id, sent back as it was received."""
        return self._post({"retry_id": (None, str(retry_id))})

    @metrics.scorer_call_timed
    def _post(self, parts: dict) -> Answer:
        """One multipart/form-data POST (a part with file name None is a plain field)."""
        try:
            response = self.session.post(self.url, files=parts, timeout=self.timeout)
        except requests.Timeout:
            return Answer(FAULT, detail=f"no answer within {self.timeout:g} s")
        except requests.RequestException as exc:
            return Answer(FAULT, detail=f"connection failed: {type(exc).__name__}")
        return parse(response.status_code, response.content)


def parse(status_code: int, body: bytes) -> Answer:
    """Sort one HTTP answer of the scorer into ready / wait / rejected / fault."""
    if status_code == 429 or status_code >= 500:
        return Answer(FAULT, detail=f"HTTP {status_code}")
    if 400 <= status_code < 500:
        return Answer(REJECTED, detail=f"HTTP {status_code}: {_snippet(body)}")
    if not 200 <= status_code < 300:
        return Answer(FAULT, detail=f"HTTP {status_code}")
    try:
        answer = json.loads(body)
    except ValueError:
        return Answer(FAULT, detail=f"not JSON: {_snippet(body)}")
    if not isinstance(answer, dict):
        return Answer(FAULT, detail=f"not a JSON object: {_snippet(body)}")
    status = answer.get("status")
    if status in ("ready", "success"):
        result = _number(answer.get("result"))
        if result is None:
            return Answer(FAULT, detail=f"ready without a numeric result: {_snippet(body)}")
        return Answer(READY, result=result)
    if status == "wait":
        retry_id = answer.get("retry_id")
        if isinstance(retry_id, bool) or not isinstance(retry_id, (str, int, float)) or retry_id == "":
            return Answer(FAULT, detail=f"wait without a retry_id: {_snippet(body)}")
        return Answer(WAIT, retry_id=retry_id)
    if status == "error":
        return Answer(REJECTED, detail=f"scorer error: {_snippet(body)}")
    return Answer(FAULT, detail=f"unknown status: {_snippet(body)}")


def _number(value: Any) -> float | None:
    """The result as a finite float, also when sent as a string; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _snippet(body: bytes, limit: int = 200) -> str:
    return body[:limit].decode("utf-8", "replace")
