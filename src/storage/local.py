"""The local-disk storage: photos and results are files under UPLOAD_DIR (the default).

    UPLOAD_DIR/photos/<ab>/<sha256>   a stored photo, shared by every task that sent the same bytes
    UPLOAD_DIR/results/<name>         a result, served at /files/<name>

The web and every worker must share UPLOAD_DIR (one disk, or a file system such as NFS with
atomic renames).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from werkzeug.exceptions import NotFound
from werkzeug.utils import send_from_directory
from werkzeug.wrappers import Response

from src.tasks import photos, results


class LocalDisk:
    kind = "local"

    def __init__(self, upload_dir: str):
        self.upload_dir = upload_dir

    def put_photo(self, digest: str, spool_path: str) -> None:
        photos.keep(self.upload_dir, spool_path, digest)

    @contextmanager
    def open_photo(self, digest: str) -> Iterator[BinaryIO]:
        with open(photos.photo_path(self.upload_dir, digest), "rb") as photo:
            yield photo

    def remove_photo(self, digest: str) -> None:
        photos.remove(photos.photo_path(self.upload_dir, digest))

    @contextmanager
    def write_result(self, name: str) -> Iterator[BinaryIO]:
        os.makedirs(results.results_dir(self.upload_dir), exist_ok=True)
        path = results.result_path(self.upload_dir, name)
        try:
            with open(path, "wb") as output:
                yield output
        except BaseException:
            photos.remove(path)
            raise

    def serve_result(self, name: str, environ: dict) -> Response | None:
        """werkzeug serves the file: Content-Type, ETag with 304, one Range, Last-Modified."""
        try:
            return send_from_directory(results.results_dir(self.upload_dir), name, environ,
                                       mimetype=results.mime_type(name), max_age=results.CACHE_SECONDS, etag=True)
        except NotFound:
            return None

    def remove_result(self, name: str) -> None:
        photos.remove(results.result_path(self.upload_dir, name))

    def old_photos(self, cutoff: float) -> Iterator[list[str]]:
        """One batch per shard folder."""
        for shard in _subfolders(os.path.join(self.upload_dir, "photos")):
            yield [entry.name for entry in _old_files(shard, cutoff)]

    def old_results(self, cutoff: float) -> Iterator[list[str]]:
        yield [entry.name for entry in _old_files(results.results_dir(self.upload_dir), cutoff)]

    def check(self) -> dict:
        return {"kind": self.kind, "status": "ok"}


def _old_files(folder: str, cutoff: float) -> list[os.DirEntry]:
    if not os.path.isdir(folder):
        return []
    return [e for e in os.scandir(folder) if e.is_file() and e.stat().st_mtime < cutoff]


def _subfolders(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    return [e.path for e in os.scandir(folder) if e.is_dir()]
