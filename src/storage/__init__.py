"""Where photos and results live: one small interface, two backends (as thumbor's storages).

- `local.LocalDisk` (the default): files under UPLOAD_DIR, which the web and every worker
  must share;
- `s3.S3Store` (STORAGE_URL=s3://BUCKET/PREFIX): objects in an S3-compatible store
  (S3_ENDPOINT_URL), so web and workers on any hosts share only Redis and the store. Its
  client library is imported only when it is chosen.

Web, jobs and the sweep use only `Storage`; upload spools stay on the web host's disk
(src/web/spools.py). A store that cannot be reached, or answers 5xx, raises
`StoreUnavailable`: the web answers 503 with Retry-After, jobs wait for it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol

from werkzeug.wrappers import Response

from src.settings import Settings


class StoreUnavailable(Exception):
    """The object store does not answer, or answers 5xx: try again shortly."""


class Storage(Protocol):
    kind: str  # "local" or "s3", for /readyz and the logs

    def put_photo(self, digest: str, spool_path: str) -> None:
        """Store the upload at `spool_path` as the photo with SHA-256 `digest`."""

    def open_photo(self, digest: str) -> AbstractContextManager[BinaryIO]:
        """The stored photo, readable and seekable, while the context lasts.
        FileNotFoundError when there is none."""

    def remove_photo(self, digest: str) -> None:
        """Remove the stored photo, if there is one."""

    def write_result(self, name: str) -> AbstractContextManager[BinaryIO]:
        """A file to write the result `name` to; stored when the context ends without an
        error, and nothing of it is left when it ends with one."""

    def serve_result(self, name: str, environ: dict) -> Response | None:
        """The result as an answer to the request in `environ` (Content-Type, ETag and 304,
        one Range, 416), streamed; None when there is no such result."""

    def remove_result(self, name: str) -> None:
        """Remove the stored result, if there is one."""

    def old_photos(self, cutoff: float) -> Iterator[list[str]]:
        """The digests of stored photos older than `cutoff` (Unix time), in batches."""

    def old_results(self, cutoff: float) -> Iterator[list[str]]:
        """The names of stored results older than `cutoff`, in batches."""

    def check(self) -> dict:
        """What /readyz says of the storage; StoreUnavailable when it does not answer."""


def open_storage(settings: Settings) -> Storage:
    """The storage `settings` choose: S3 when STORAGE_URL is set, else UPLOAD_DIR."""
    if settings.storage_url:
        from src.storage.s3 import S3Store  # the client library only where it is chosen

        return S3Store.from_settings(settings)
    from src.storage.local import LocalDisk

    return LocalDisk(settings.upload_dir)


def preload(settings: Settings) -> None:
    """Import the chosen backend's client library now: a worker does so once at start, not
    in its first job."""
    if settings.storage_url:
        import src.storage.s3  # noqa: F401


def current_storage(settings: Settings) -> Storage:
    """This process's storage (a forked process makes its own: connections are not shared
    across a fork)."""
    return _per_process(settings.storage_url, settings.s3_endpoint_url, settings.upload_dir, os.getpid())


@functools.lru_cache(maxsize=4)
def _per_process(storage_url: str, endpoint_url: str, upload_dir: str, pid: int) -> Storage:
    return open_storage(Settings(storage_url=storage_url, s3_endpoint_url=endpoint_url, upload_dir=upload_dir))
