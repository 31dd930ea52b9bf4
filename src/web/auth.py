"""Who is asking: the API key's name, or in open mode the client's address."""

from __future__ import annotations

import hmac

from werkzeug.wrappers import Request

from src.web.errors import ApiError


def identify(request: Request, api_keys: dict[str, str]) -> str:
    """The user a request acts for; 401 when keys are required and none valid is given."""
    if not api_keys:
        return request.remote_addr or "unknown"
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise _unauthorized("an API key is required: Authorization: Bearer <key>")
    user = _match(given.strip().encode(), api_keys)
    if user is None:
        raise _unauthorized("the API key is not valid")
    return user


def _match(given: bytes, api_keys: dict[str, str]) -> str | None:
    """Compare against every key in constant time, so timing tells nothing about the keys."""
    found = None
    for key, name in api_keys.items():
        if hmac.compare_digest(given, key.encode()):
            found = name
    return found


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="photo-tasks"'})
