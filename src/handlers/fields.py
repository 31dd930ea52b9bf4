"""The form fields of POST /, checked: a scoring task's name, or a resize task's settings.

Every bad value is a 400 that names its field.
"""

from __future__ import annotations

import re
import unicodedata

from src.callbacks import urls
from src.tasks.resize_spec import DEFAULT_QUALITY, FITS, FORMATS, ResizeSpec
from src.web.errors import ApiError

MAX_NAME_LENGTH = 100
SIZE_FIELDS = ("width", "height")
RESIZE_FIELDS = (*SIZE_FIELDS, "fit", "enlarge", "format", "quality")
FORMAT_ALIASES = {"jpg": "jpeg"}
_DIGITS = re.compile(r"[0-9]{1,9}")


def task_kind(form) -> str:
    """Which kind of task the form asks for: "score" with `name`, "resize" with a size."""
    given = [field for field in RESIZE_FIELDS if field in form]
    if "name" in form:
        if given:
            raise ApiError(400, "conflicting_fields",
                           f"{given[0]} belongs to a resize task; send either name or width/height", given[0])
        return "score"
    if any(field in form for field in SIZE_FIELDS):
        return "resize"
    if given:
        raise ApiError(400, "missing_field", f"{given[0]} needs width and/or height", "width")
    raise ApiError(400, "missing_field", "send name (a scoring task) or width/height (a resize task)", "name")


def name(form) -> str:
    """The trimmed name of a scoring task, in NFC."""
    value = form["name"].strip()
    if not 1 <= len(value) <= MAX_NAME_LENGTH:
        raise ApiError(400, "invalid_field", f"name must have 1 to {MAX_NAME_LENGTH} characters", "name")
    if any(unicodedata.category(char) == "Cc" or char in "\u2028\u2029" for char in value):
        raise ApiError(400, "invalid_field", "name must not contain control characters", "name")
    if not any(char.isalpha() for char in value):
        raise ApiError(400, "invalid_field", "name must contain at least one letter", "name")
    return unicodedata.normalize("NFC", value)


def resize_spec(form, max_side: int) -> ResizeSpec:
    """A resize task's settings; the format stays "" (the source's) when not given."""
    return ResizeSpec(
        width=_integer(form, "width", 1, max_side),
        height=_integer(form, "height", 1, max_side),
        fit=_choice(form, "fit", FITS, "contain"),
        enlarge=_choice(form, "enlarge", ("0", "1"), "0") == "1",
        format=_choice(form, "format", tuple(FORMATS), "", FORMAT_ALIASES),
        quality=_integer(form, "quality", 1, 100) or DEFAULT_QUALITY,
    )


def _integer(form, field: str, low: int, high: int) -> int | None:
    if field not in form:
        return None
    raw = form[field].strip()
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_field", f"{field} must be a whole number from {low} to {high}", field)
    return int(raw)


def _choice(form, field: str, choices: tuple[str, ...], default: str, aliases: dict | None = None) -> str:
    if field not in form:
        return default
    value = form[field].strip().lower()
    value = (aliases or {}).get(value, value)
    if value not in choices:
        raise ApiError(400, "invalid_field", f"{field} must be one of: {', '.join(choices)}", field)
    return value


def callback_url(form, settings) -> str:
    """The task's `callback_url`, checked (src/callbacks/urls.py), or '' when not given."""
    if "callback_url" not in form:
        return ""
    if not settings.webhook_secret:
        raise ApiError(400, "invalid_field", "callback_url needs the server's WEBHOOK_SECRET, which is not set: "
                       "callbacks are off on this server", "callback_url")
    try:
        return urls.check(form["callback_url"].strip(), bool(settings.callback_allow_private))
    except urls.RefusedUrl as refused:
        raise ApiError(400, "invalid_field", str(refused), "callback_url") from None
