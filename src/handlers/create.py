"""POST /: check the upload, then create a task, or answer with the task that already holds
the same photo and settings for this user."""

from __future__ import annotations

import os
import time

from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from src import metrics
from src.handlers import fields
from src.handlers.answers import location
from src.handlers.held import held_post_answer
from src.limits import disk, rules
from src.store import READY, Claim
from src.tasks import images, lifecycle, queues
from src.tasks.dedupe import dedupe_key, normalise_name
from src.tasks.resize_spec import ResizeSpec
from src.web.context import Context
from src.web.errors import ApiError, json_response
from src.web.request import MAX_FORM_MEMORY_SIZE, MAX_FORM_PARTS

# Why a photo was rejected -> the status code that says so.
PHOTO_REFUSALS = {"unsupported_media_type": 415, "corrupt_image": 422, "image_too_large": 422}


def handle(ctx: Context, request: Request, user: str) -> Response:
    try:
        response = _create(ctx, request, user)
    except OSError as exc:  # the upload met a full disk while it was written (its flush at close too)
        if not disk.is_disk_full(exc):
            raise
        raise refused(rules.disk_full(ctx.settings)) from None
    finally:
        request.discard_uploads()
    return held_post_answer(ctx, request, user, response)  # Prefer: wait, once the upload is let go of


def _create(ctx: Context, request: Request, user: str) -> Response:
    if request.content_length is None or request.content_length <= ctx.settings.max_upload_bytes:
        _check_free_space(ctx)  # a body over the limit gets 413 first
    form, files = _parse(request, ctx.settings.max_upload_bytes)
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "the body must be multipart/form-data")
    if fields.task_kind(form) == "resize":
        spec = fields.resize_spec(form, ctx.settings.resize_max_side)
        callback_url = fields.callback_url(form, ctx.settings)
        photo, info = _photo(ctx, files)
        return _resize(ctx, user, spec.resolved(info.format), photo.stream, callback_url)
    name = fields.name(form)
    callback_url = fields.callback_url(form, ctx.settings)
    photo, info = _photo(ctx, files)
    return _score(ctx, user, name, photo, info, callback_url)


def _parse(request: Request, max_upload_bytes: int):
    """The form and the files; 413 for a body over MAX_UPLOAD_BYTES, 400 for a body within
    it that breaks the form's limits, which werkzeug also reports as "too large". (A spool
    that meets a full disk is `handle`'s 507.)"""
    try:
        return request.form, request.files
    except ValueError:
        raise ApiError(400, "invalid_body", "the multipart body could not be parsed") from None
    except RequestEntityTooLarge:
        if request.content_length is None or request.content_length > max_upload_bytes:
            raise
        raise ApiError(400, "form_too_large",
                       f"the form may have at most {MAX_FORM_PARTS} parts, and each text field or part "
                       f"header at most {MAX_FORM_MEMORY_SIZE} bytes") from None


def _photo(ctx: Context, files) -> tuple[FileStorage, images.ImageInfo]:
    """The uploaded photo, spooled to disk and hashed, and what Pillow makes of it."""
    photo = files.get("photo")
    if photo is None:
        raise ApiError(400, "missing_field", "photo is required (a file part)", "photo")
    photo.stream.close()  # the HashingFile the request spooled it to
    spool = photo.stream
    try:
        return photo, images.known_photos.inspect(spool.digest, spool.path, ctx.settings.max_image_pixels)
    except images.PhotoRejected as rejected:
        raise ApiError(PHOTO_REFUSALS[rejected.code], rejected.code, str(rejected), "photo") from None


def _score(ctx: Context, user: str, name: str, photo: FileStorage, info: images.ImageInfo,
           callback_url: str = "") -> Response:
    return _start(ctx, user, "score", normalise_name(name), photo.stream, callback_url,
                  name=name, filename=_filename(photo, info), content_type=info.mime_type,
                  deadline=time.time() + ctx.settings.scorer_deadline)


def _resize(ctx: Context, user: str, spec: ResizeSpec, spool, callback_url: str = "") -> Response:
    spec_json = spec.to_json()
    return _start(ctx, user, "resize", spec_json, spool, callback_url, spec=spec_json)


def _start(ctx: Context, user: str, kind: str, settings_key: str, spool, callback_url: str,
           **task_fields) -> Response:
    """Claim the task for (user, kind, settings, photo) and start its job, or answer with the
    live task that already holds them (which a `callback_url` joins while it waits)."""
    store = ctx.store
    claim = store.claim(dedupe_key(user, kind, settings_key, spool.digest), callback_url=callback_url,
                        kind=kind, owner=user, digest=spool.digest, photo_bytes=os.path.getsize(spool.path),
                        limits=rules.claim_limits(ctx.settings), **task_fields)
    if claim.refused:  # a limit: nothing was stored
        raise refused(rules.refusal(claim.refused, claim.retry_after, ctx.settings))
    if not claim.is_new:
        if claim.starting:  # its POST died before it could start it (or is still at it): start it here
            _begin(ctx, claim, kind, user, spool)
        return _existing(claim)
    try:
        _begin(ctx, claim, kind, user, spool)
    except Exception:
        lifecycle.delete_task(store, ctx.storage, claim.task_id)
        raise
    body = {"status": "received", "task": claim.task_id, "result": None}
    return json_response(body, 202, location(claim.task_id))


def _begin(ctx: Context, claim: Claim, kind: str, user: str, spool) -> None:
    """Put the photo in its place, then start the task (the first POST to get there does)."""
    lifecycle.keep_photo(ctx.store, ctx.storage, claim, spool.digest, spool.path)
    queues.start_task(ctx.store, kind, claim.task_id, user, metrics.task_created(kind))


# --- sharing the service fairly (docs/fair-sharing.md) -----------------------------------
def _check_free_space(ctx: Context) -> None:
    if disk.short_of_space(ctx.settings.upload_dir, ctx.settings.min_free_bytes):
        raise refused(rules.disk_full(ctx.settings))


def refused(refusal: rules.Refusal) -> ApiError:
    headers = {} if refusal.retry_after is None else {"Retry-After": str(refusal.retry_after)}
    return ApiError(refusal.status, refusal.code, refusal.message, headers=headers)


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
