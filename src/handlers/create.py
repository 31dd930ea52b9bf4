"""POST /: check the upload, then create a task, or answer with the task that already holds
the same photo and settings for this user."""

from __future__ import annotations

import os
import time
import unicodedata

from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Request, Response

from .. import images, lifecycle, queues
from ..context import Context
from ..errors import ApiError, json_response
from ..store import READY, Claim, dedupe_key, normalise_name
from .answers import location

MAX_NAME_LENGTH = 100
RESIZE_FIELDS = ("width", "height")


def handle(ctx: Context, request: Request, user: str) -> Response:
    try:
        return _create(ctx, request, user)
    finally:
        request.discard_uploads()


def _create(ctx: Context, request: Request, user: str) -> Response:
    form, files = _parse(request)  # first, so any body over MAX_UPLOAD_BYTES gets 413
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "the body must be multipart/form-data")
    name = _name(form)
    photo = _photo(files)
    spool = photo.stream  # the HashingFile the request spooled it to
    spool.close()
    info = images.inspect(spool.path, ctx.settings.max_image_pixels)
    return _score(ctx, user, name, photo, info, spool)


def _parse(request: Request):
    try:
        return request.form, request.files
    except ValueError:
        raise ApiError(400, "invalid_body", "the multipart body could not be parsed") from None


def _name(form) -> str:
    """The trimmed name of a scoring task (resize tasks are not served yet)."""
    resize = [field for field in RESIZE_FIELDS if field in form]
    if "name" not in form:
        if resize:
            raise ApiError(400, "not_supported", "resize tasks are not available yet", resize[0])
        raise ApiError(400, "missing_field", "name is required", "name")
    if resize:
        raise ApiError(400, "conflicting_fields", "send either name or width/height, not both", resize[0])
    name = form["name"].strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise ApiError(400, "invalid_field", f"name must have 1 to {MAX_NAME_LENGTH} characters", "name")
    if any(unicodedata.category(char) == "Cc" or char in "\u2028\u2029" for char in name):
        raise ApiError(400, "invalid_field", "name must not contain control characters", "name")
    if not any(char.isalpha() for char in name):
        raise ApiError(400, "invalid_field", "name must contain at least one letter", "name")
    return unicodedata.normalize("NFC", name)


def _photo(files) -> FileStorage:
    photo = files.get("photo")
    if photo is None:
        raise ApiError(400, "missing_field", "photo is required (a file part)", "photo")
    return photo


def _score(ctx: Context, user: str, name: str, photo: FileStorage, info: images.ImageInfo, spool) -> Response:
    settings, store = ctx.settings, ctx.store
    dedupe = dedupe_key(user, "score", normalise_name(name), spool.digest)
    claim = store.claim(
        dedupe, kind="score", owner=user, name=name, digest=spool.digest,
        filename=_filename(photo, info), content_type=info.mime_type,
        deadline=time.time() + settings.scorer_deadline,
    )
    if not claim.is_new:
        return _existing(claim)
    try:
        lifecycle.keep_photo(store, settings.upload_dir, claim.task_id, spool.digest, spool.path)
        job_id = queues.new_job_id(claim.task_id)
        store.update(claim.task_id, job_id=job_id)
        queues.enqueue_score(store.redis, claim.task_id, job_id, settings)
    except Exception:
        lifecycle.discard_task(store, settings.upload_dir, claim.task_id)
        raise
    body = {"status": "received", "task": claim.task_id, "result": None}
    return json_response(body, 202, location(claim.task_id))


def _existing(claim: Claim) -> Response:
    """The live task that already holds this photo and settings: ready (200) or wait (202)."""
    if claim.state == READY:
        return json_response({"status": "ready", "task": claim.task_id, "result": claim.result})
    body = {"status": "wait", "task": claim.task_id, "result": None}
    return json_response(body, 202, location(claim.task_id))


def _filename(photo: FileStorage, info: images.ImageInfo) -> str:
    """The name the photo was sent with (no directories), or one made from its format."""
    filename = os.path.basename((photo.filename or "").replace("\\", "/")).strip()
    return filename or f"photo.{info.format.lower()}"
