"""The one error shape every failure answers with, and the JSON response helper."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response


def json_response(body: dict[str, Any], status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


class ApiError(Exception):
    """A failure the client is told about: `{"status": "error", ..., "error": {...}}`."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def response(self) -> Response:
        error = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        body = {"status": "error", "result": None, "error": error}
        return json_response(body, self.status, self.headers)


def body_too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "too_large", f"the request body is larger than MAX_UPLOAD_BYTES ({max_bytes} bytes)")
